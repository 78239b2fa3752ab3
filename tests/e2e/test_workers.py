"""``switchyard serve --workers N``: several processes behind one port.

A remote-only configuration (the fake OpenAI upstream) served by two workers: both
answer requests (a request id starts with its process's random prefix, see
``proxy.context``), a worker killed with ``kill -9`` is replaced, SIGHUP makes every
worker reload its configuration, and SIGTERM to the parent drains and stops them all.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import CLIENT_KEY, model_entry, sdk
from tests.support.fake_openai import Fault, running_fake, wait_until
from tests.support.servers import ServedProcess, free_port, serve_process
from tests.support.streams import BackgroundStream

ASK = [{"role": "user", "content": "hi"}]
PREFIX_CHARS = 12
"""A request id's per-process prefix (``proxy.context._ID_PREFIX``: 6 random bytes)."""


def children(pid: int) -> list[int]:
    """The live (not zombie) worker processes of ``pid``, from /proc (multiprocessing's
    resource tracker, also a child, is not one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() != str(pid) or fields["State"].startswith("Z"):
            continue
        with contextlib.suppress(OSError):
            if b"spawn_main" in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def config(fake_url: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "server": {"data_dir": str(tmp_path / "data"), "api_keys": [CLIENT_KEY]},
        "defaults": False,
        # Never contacted here (no RAG request is made): it only says RAG would use a
        # Chroma server, which several workers can share.
        "rag": {"chroma_url": f"http://127.0.0.1:{free_port()}"},
        "models": [model_entry("m", "upstream-a", fake_url, timeout_s=60)],
        **extra,
    }


@contextmanager
def two_workers(cfg: dict[str, Any], tmp_path: Path) -> Iterator[ServedProcess]:
    with serve_process(cfg, tmp_path, args=["--workers", "2"]) as served:
        assert wait_until(lambda: len(children(served.proc.pid)) == 2, timeout=30)
        yield served


def answering_prefixes(url: str, tries: int = 300) -> set[str]:
    """Request-id prefixes of the processes that answered; each request on a new
    connection (the kernel picks the worker per connection). Stops at two."""
    seen: set[str] = set()
    for _ in range(tries):
        reply = httpx.get(f"{url}/health", headers={"connection": "close"}, timeout=10)
        seen.add(reply.headers["x-request-id"][:PREFIX_CHARS])
        if len(seen) == 2:
            break
    return seen


def test_two_workers_share_the_port_and_a_killed_one_is_replaced(tmp_path: Path) -> None:
    with running_fake() as (_, fake_url), two_workers(config(fake_url, tmp_path), tmp_path) as s:
        workers = children(s.proc.pid)
        assert len(answering_prefixes(s.url)) == 2
        with sdk(s) as client:  # type: ignore[arg-type]
            answer = client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "Hello! You said: hi"

        os.kill(workers[0], signal.SIGKILL)
        assert wait_until(
            lambda: len(children(s.proc.pid)) == 2 and workers[0] not in children(s.proc.pid),
            timeout=30,
        )
        assert s.proc.poll() is None
        replacement = (set(children(s.proc.pid)) - set(workers)).pop()
        assert wait_until(lambda: len(answering_prefixes(s.url)) == 2, timeout=30)
        assert alive(replacement) and alive(workers[1])


def test_sighup_reloads_every_worker(tmp_path: Path) -> None:
    with (
        running_fake() as (fake_a, url_a),
        running_fake() as (fake_b, url_b),
        two_workers(config(url_a, tmp_path), tmp_path) as served,
    ):
        path = tmp_path / "switchyard.yaml"
        changed = json.loads(path.read_text())
        changed["models"] = [model_entry("m", "upstream-b", url_b, timeout_s=60)]
        path.write_text(json.dumps(changed))
        served.proc.send_signal(signal.SIGHUP)
        assert wait_until(
            lambda: served.log.read_text().count('"configuration reloaded"') == 2, timeout=30
        )
        # Fresh connections, so both workers serve some of these.
        for _ in range(20):
            with sdk(served, http_client=httpx.Client(headers={"connection": "close"})) as c:  # type: ignore[arg-type]
                c.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
        assert len(fake_b.received("/v1/chat/completions")) == 20
        assert fake_a.received("/v1/chat/completions") == []


def test_sigterm_drains_every_worker_and_stops_them_all(tmp_path: Path) -> None:
    hold = Fault("hold", after=2)
    with (
        running_fake({"upstream-a": hold}) as (fake, fake_url),
        two_workers(config(fake_url, tmp_path), tmp_path) as served,
    ):
        workers = children(served.proc.pid)
        client = sdk(served)  # type: ignore[arg-type]
        reader = BackgroundStream(client, "m", ASK)
        assert wait_until(lambda: bool(fake.received("/v1/chat/completions")), timeout=15)
        served.proc.send_signal(signal.SIGTERM)
        # The workers drain: the stream in flight is still served, to its end.
        assert wait_until(lambda: "draining" in served.log.read_text(), timeout=15)
        hold.release.set()
        assert reader.join() == "Hello! You said: hi"
        client.close()
        assert served.proc.wait(timeout=30) == 0
        assert not any(alive(pid) for pid in workers)
        assert children(served.proc.pid) == []


def test_a_worker_that_cannot_start_stops_the_parent_with_an_error(tmp_path: Path) -> None:
    broken = config("http://127.0.0.1:9/v1", tmp_path)
    # A state database the workers cannot open: each fails before it serves.
    broken["state"] = {"database": f"sqlite:///{tmp_path}/missing/dir/x.sqlite3"}
    (tmp_path / "missing").write_text("a file where a directory should be")
    try:
        with serve_process(broken, tmp_path, args=["--workers", "2"], startup_timeout_s=60):
            raise AssertionError("the server started")
    except RuntimeError as exc:
        assert "switchyard serve exited" in str(exc)
    assert "before it served" in (tmp_path / "switchyard.log").read_text()
