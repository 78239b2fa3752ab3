"""The ``cache`` scenario of bench/overhead.py: every request after the first is a hit.

The gateway is ``plain``'s (no key, same model) with ``cache: {ttl_s: 3600}`` on the
model; wrk sends one body over and over, so the first request fills the entry (in the
warm-up) and the measured ones are answered from the in-process cache without the
upstream (a replayed stream carries its text in one content chunk, where the mock
streams 20). Reported against ``plain`` of the same engine, mode and concurrency in the
same run; the issue's target is at least twice plain's requests/s at c=64.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

from processes import Gateway, start_gateway

DESCRIPTION = "cache: plain with cache: {ttl_s: 3600} on the model (every measured request a hit)"
TARGET_RPS_RATIO = 2.0
MODEL_OPTIONS = "    cache: {ttl_s: 3600}\n"


def start_cache_gateway(
    stack: ExitStack, workdir: Path, transport: str, mock_port: int, log_level: str
) -> Gateway:
    gateway = start_gateway(
        stack,
        workdir,
        transport,
        mock_port,
        log_level,
        label=f"{transport}+cache",
        model_options=MODEL_OPTIONS,
    )
    gateway.stream_chunks = 1  # a replayed stream carries the answer in one content chunk
    return gateway


def print_cache(rows: list[Any], out: list[str]) -> None:
    """Each cache row against plain of the same engine, mode and concurrency."""
    cached = [r for r in rows if r.gateway is not None and r.gateway.scenario == "cache"]
    if not cached:
        return
    out.append("")
    out.append("cache hits against plain (same engine, same run; reported, never asserted):")
    for row in cached:
        plain = next(
            (
                r
                for r in rows
                if r.gateway is not None
                and r.gateway.scenario == "plain"
                and r.gateway.engine == row.gateway.engine
                and r.mode == row.mode
                and r.connections == row.connections
            ),
            None,
        )
        if plain is None or not plain.run.rps or not row.run.requests:
            continue
        ratio = row.run.rps / plain.run.rps
        verdict = ""
        if row.connections == 64:
            verdict = f"[{'PASS' if ratio >= TARGET_RPS_RATIO else 'MISS'}] "
        cpu = (row.gw_cpu_s or 0.0) / row.run.requests * 1e6
        plain_cpu = (plain.gw_cpu_s or 0.0) / max(1, plain.run.requests) * 1e6
        out.append(
            f"  {verdict:<7}{row.gateway.transport:<16} {row.mode:<6} c={row.connections:<3} "
            f"req/s {row.run.rps:>8,.0f} vs {plain.run.rps:>8,.0f} ({ratio:.2f}x"
            f"{', target >= 2x' if verdict else ''})   p50 {row.run.p50_ms:.3f} vs "
            f"{plain.run.p50_ms:.3f} ms   CPU/req {cpu:5.0f} vs {plain_cpu:5.0f} us"
        )
