"""Usage rows against an abrupt end: ``switchyard serve`` in a subprocess, driven with
sequential requests, then stopped with SIGKILL (or SIGTERM), and its SQLite state store
read back. Shared by ``tests/e2e/test_usage_kill.py`` and ``bench/usage_kill.py``.

Each request carries its own ``x-request-id`` (the gateway keeps a given id), so every
usage row can be matched to the request it accounts for. A request counts as
acknowledged once its whole 200 response has been read; its time is taken then.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from proxy.state import open_state
from proxy.state.config import StateConfig
from proxy.state.records import UsageFilter, UsageRecord
from tests.support.servers import serve_process

KEY = "sk-usage-kill-client"
MODEL = "usage-kill"


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log: Path


@contextmanager
def serve(workdir: Path, upstream_url: str, flush_interval_s: float) -> Iterator[Served]:
    """``switchyard serve`` (this checkout's code) with one model on ``upstream_url``, a
    static client key and the default SQLite state under ``workdir/data``."""
    data_dir = workdir / "data"
    config = {
        "defaults": False,
        "server": {"host": "127.0.0.1", "data_dir": str(data_dir), "api_keys": [KEY]},
        "state": {"usage_flush_interval_s": flush_interval_s},
        "models": [
            {
                "name": MODEL,
                "adapter": "openai",
                "model": "upstream-usage-kill",
                "base_url": upstream_url,
                "api_key": "sk-upstream",
                "timeout_s": 10,
            }
        ],
    }
    with serve_process(config, workdir) as served:
        yield Served(served.proc, served.url, data_dir, served.log)


@dataclass
class Load:
    acknowledged: dict[str, float]
    """Request id -> wall-clock time its 200 response was read in full."""
    refused: int
    """Answers that were not 200 (none expected)."""
    began: float
    ended: float

    @property
    def rate(self) -> float:
        span = self.ended - self.began
        return len(self.acknowledged) / span if span > 0 else 0.0


def drive(url: str, requests: int, *, at_least_s: float = 0.0, tag: str = "kill") -> Load:
    """Sequential chat completions: ``requests`` of them, and more until ``at_least_s``
    have passed (so that the run spans several flush intervals)."""
    acknowledged: dict[str, float] = {}
    refused = 0
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, timeout=10) as client:
        began = time.time()
        n = 0
        while n < requests or time.time() - began < at_least_s:
            request_id = f"{tag}-{n:07d}"
            n += 1
            answer = client.post(
                "/v1/chat/completions", json=body, headers={**headers, "x-request-id": request_id}
            )
            if answer.status_code == 200:
                acknowledged[request_id] = time.time()
            else:
                refused += 1
        return Load(acknowledged, refused, began, time.time())


def stop(served: Served, sig: signal.Signals) -> float:
    """Send ``sig`` and wait for the process to end; returns when the signal was sent."""
    sent = time.time()
    served.proc.send_signal(sig)
    served.proc.wait(60)
    return sent


def stored_rows(data_dir: Path) -> list[UsageRecord]:
    """Every usage row in the state store under ``data_dir``."""

    async def read() -> list[UsageRecord]:
        store = await open_state(StateConfig(), data_dir=str(data_dir))
        try:
            rows: list[UsageRecord] = []
            cursor: str | None = None
            while True:
                page, cursor = await store.usage.requests(UsageFilter(), 1000, cursor)
                rows += page
                if cursor is None:
                    return rows
        finally:
            await store.aclose()

    return asyncio.run(read())


@dataclass
class Outcome:
    load: Load
    stopped_at: float
    rows: list[UsageRecord]

    @property
    def stored_ids(self) -> list[str]:
        return [row.request_id for row in self.rows]

    @property
    def lost(self) -> list[str]:
        stored = set(self.stored_ids)
        return [rid for rid in self.load.acknowledged if rid not in stored]

    def acknowledged_after(self, since: float) -> set[str]:
        return {rid for rid, at in self.load.acknowledged.items() if at > since}


def measure(
    workdir: Path,
    upstream_url: str,
    *,
    requests: int,
    flush_interval_s: float,
    sig: signal.Signals,
    at_least_s: float = 0.0,
) -> Outcome:
    """Serve, drive, stop with ``sig`` right after the last acknowledged answer, read back."""
    with serve(workdir, upstream_url, flush_interval_s) as served:
        load = drive(served.url, requests, at_least_s=at_least_s)
        stopped_at = stop(served, sig)
    return Outcome(load, stopped_at, stored_rows(served.data_dir))
