"""What each client dialect costs on top of Chat Completions, in one run.

Starts bench/mock_upstream.py and one ``switchyard serve`` (the ``plain`` gateway of
bench/overhead.py: no key, one model on the mock) and drives it with ``wrk``
(bench/wrk/chat.lua, whose fourth argument picks the body) through each route the
gateway translates to the one chat pipeline:

- ``chat``: ``/v1/chat/completions``, the baseline;
- ``responses``: ``/v1/responses`` with ``"store": false`` (no state store write);
- ``responses+store``: the same with ``"store": true`` (one stored response a request);
- ``messages``: ``/v1/messages`` (Anthropic Messages, ``max_tokens`` 32);
- ``ollama``: ``/api/chat`` (``"stream": false``, or the NDJSON stream).

Before the load each dialect gets one checked non-streaming and one streaming request
(httpx): a 200 with the dialect's shape, the mock's text, and its 20 content deltas;
a broken route stops the run. For each (mode, concurrency) the dialects run one after
another (each with a warm-up), so drift on a shared machine touches them alike.

Prints one table (requests/s, p50/p99 latency, the gateway's CPU time per request and
CPU use, wrk's non-2xx and other errors), then each dialect against ``chat`` of the same
mode and concurrency; nothing is asserted.

    .venv/bin/python bench/dialects.py                          # about 3.5 minutes
    .venv/bin/python bench/dialects.py --duration 2 --concurrency 64 --mode chat
    .venv/bin/python bench/dialects.py --dialects chat,messages --profile /tmp/prof
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import CHAT_PATH, Row, add_load_options, check_tools, fmt, measure
from processes import CHUNKS, MODEL, check_answers, start_gateway, start_mock

#: Name -> (path, description). The names are chat.lua's dialect argument.
DIALECTS = {
    "chat": (CHAT_PATH, "OpenAI Chat Completions (the baseline)"),
    "responses": ("/v1/responses", 'Responses API, "store": false'),
    "responses+store": ("/v1/responses", 'Responses API, "store": true (state store)'),
    "messages": ("/v1/messages", "Anthropic Messages"),
    "ollama": ("/api/chat", "Ollama /api/chat (NDJSON stream)"),
}
#: What the mock upstream answers (bench/mock_upstream.py).
TEXT = "Hello from the mock upstream."
DELTAS = [f"tok{i} " for i in range(CHUNKS)]

# ---------------------------------------------------------------- shape checks


def _sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each SSE event; both dialects name every event."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            events.append((fields.get("event", ""), json.loads(fields["data"])))
    return events


def _responses(answer: dict[str, Any]) -> bool:
    return (
        answer.get("object") == "response"
        and answer.get("status") == "completed"
        and answer["output"][0]["content"][0]["text"] == TEXT
    )


def _responses_stream(text: str) -> bool:
    events = _sse(text)
    deltas = [d["delta"] for name, d in events if name == "response.output_text.delta"]
    return (
        events[0][0] == "response.created"
        and events[-1][0] == "response.completed"
        and deltas == DELTAS
    )


def _messages(answer: dict[str, Any]) -> bool:
    return (
        answer.get("type") == "message"
        and answer.get("stop_reason") == "end_turn"
        and answer["content"] == [{"type": "text", "text": TEXT}]
    )


def _messages_stream(text: str) -> bool:
    events = _sse(text)
    deltas = [d["delta"]["text"] for name, d in events if name == "content_block_delta"]
    return events[0][0] == "message_start" and events[-1][0] == "message_stop" and deltas == DELTAS


def _ollama(answer: dict[str, Any]) -> bool:
    return answer.get("done") is True and answer["message"]["content"] == TEXT


def _ollama_stream(text: str) -> bool:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    deltas = [line["message"]["content"] for line in lines[:-1]]
    return deltas == DELTAS and lines[-1]["done"] is True and lines[-1]["done_reason"] == "stop"


#: Dialect -> (request body, non-streaming check, streaming check, stream content type).
Check = tuple[dict[str, Any], Callable[[dict[str, Any]], bool], Callable[[str], bool], str]
USER = [{"role": "user", "content": "Say hello."}]
CHECKS: dict[str, Check] = {
    "responses": (
        {"input": "Say hello.", "max_output_tokens": 32, "store": False},
        _responses,
        _responses_stream,
        "text/event-stream",
    ),
    "messages": (
        {"messages": USER, "max_tokens": 32},
        _messages,
        _messages_stream,
        "text/event-stream",
    ),
    "ollama": ({"messages": USER}, _ollama, _ollama_stream, "application/x-ndjson"),
}
CHECKS["responses+store"] = ({**CHECKS["responses"][0], "store": True}, *CHECKS["responses"][1:])


def _holds(check: Callable[[Any], bool], answer: Callable[[], Any]) -> bool:
    """``check`` of the answer; an answer missing what it looks at fails it."""
    try:
        return check(answer())
    except (KeyError, IndexError, TypeError, ValueError):
        return False


def check_dialect(port: int, dialect: str) -> None:
    """One non-streaming and one streaming request, answered in the dialect's shape;
    a stored response must then be readable. Raises SystemExit otherwise."""
    if dialect == "chat":
        check_answers(port, "chat")
        return
    path, _ = DIALECTS[dialect]
    body, whole, streamed, content_type = CHECKS[dialect]
    base = {"model": MODEL, **body}
    headers = {"authorization": "Bearer sk-bench"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as client:
        answer = client.post(path, json={**base, "stream": False})
        if answer.status_code != 200 or not _holds(whole, answer.json):
            raise SystemExit(f"{dialect}: bad answer {answer.status_code}: {answer.text[:500]}")
        if base.get("store"):
            stored = client.get(f"{path}/{answer.json()['id']}")
            if stored.status_code != 200 or stored.json()["id"] != answer.json()["id"]:
                raise SystemExit(f"{dialect}: not stored {stored.status_code}: {stored.text[:300]}")
        stream = client.post(path, json={**base, "stream": True})
        kind = stream.headers.get("content-type", "")
        if (
            stream.status_code != 200
            or not kind.startswith(content_type)
            or not _holds(streamed, lambda: stream.text)
        ):
            raise SystemExit(
                f"{dialect}: bad stream {stream.status_code} {kind}: {stream.text[:500]}"
            )


# ---------------------------------------------------------------- report


def per_request_us(row: Row) -> float | None:
    if row.gw_cpu_s is None or not row.run.requests:
        return None
    return row.gw_cpu_s / row.run.requests * 1e6


def label(row: Row) -> str:
    kind = "chat" if row.mode == "chat" else f"stream{CHUNKS}"
    return f"{row.target:<16} {kind:<8} c={row.connections}"


def report(rows: list[Row], out: list[str]) -> None:
    header = (
        f"{'dialect / mode / concurrency':<32} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'gw CPU/req':>11} {'gw CPU':>7} {'non-2xx':>8} {'other err':>9}"
    )
    out += [header, "-" * len(header)]
    for row in rows:
        r = row.run
        other = r.error_count - r.errors.get("status", 0)
        cpu = per_request_us(row)
        out.append(
            f"{label(row):<32} {r.rps:>9,.0f} {r.p50_ms:>8.3f} {r.p99_ms:>8.3f} "
            f"{fmt(cpu, '8.0f') + ' us' if cpu is not None else '-':>11} "
            f"{(row.gw_cpu_s or 0.0) / row.wall_s * 100:>6.0f}% "
            f"{r.errors.get('status', 0):>8} {other:>9}"
        )
    for row in rows:
        if row.run.error_count or not row.run.requests:
            out.append(f"  !! {label(row)}: {row.run.requests} requests, errors {row.run.errors}")
    out += ["", "against chat (same mode and concurrency, same run; reported, never asserted):"]
    out.append(
        f"  {'dialect / mode / concurrency':<32} {'req/s':>7} {'p50':>7} {'+p50 ms':>8} "
        f"{'p99':>7} {'CPU/req':>8} {'+CPU/req':>9}"
    )
    for row in rows:
        if row.target == "chat":
            continue
        base = next(
            r
            for r in rows
            if r.target == "chat" and r.mode == row.mode and r.connections == row.connections
        )
        cpu, base_cpu = per_request_us(row), per_request_us(base)

        def ratio(a: float | None, b: float | None) -> str:
            return f"{a / b:.2f}x" if a is not None and b else "-"

        extra = cpu - base_cpu if cpu is not None and base_cpu is not None else None
        out.append(
            f"  {label(row):<32} {ratio(row.run.rps, base.run.rps):>7} "
            f"{ratio(row.run.p50_ms, base.run.p50_ms):>7} "
            f"{row.run.p50_ms - base.run.p50_ms:>+8.3f} "
            f"{ratio(row.run.p99_ms, base.run.p99_ms):>7} {ratio(cpu, base_cpu):>8} "
            f"{fmt(extra, '+6.0f') + ' us' if extra is not None else '-':>9}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dialects",
        default=",".join(DIALECTS),
        help="comma-separated, of: " + ", ".join(DIALECTS) + " (default all; chat always runs)",
    )
    parser.add_argument("--transport", choices=["aiohttp", "httpx"], default="aiohttp")
    add_load_options(parser)
    args = parser.parse_args(argv)
    check_tools(args)
    chosen = [d.strip() for d in args.dialects.split(",") if d.strip()]
    unknown = [d for d in chosen if d not in DIALECTS]
    if unknown:
        raise SystemExit(f"--dialects: any of {', '.join(DIALECTS)}, not {unknown}")
    dialects = ["chat", *(d for d in DIALECTS if d in chosen and d != "chat")]
    modes = ["chat", "stream"] if args.mode == "both" else [args.mode]
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]

    rows: list[Row] = []
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="switchyard-bench")))
        mock, mock_port = start_mock(stack)
        gw = start_gateway(stack, workdir, args.transport, mock_port, args.log_level)
        for dialect in dialects:
            check_dialect(gw.port, dialect)
        runs = len(modes) * len(levels) * len(dialects)
        eta = runs * (max(1, round(args.warmup)) + max(1, round(args.duration)) + 0.3)
        print(
            f"mock upstream :{mock_port}; gateway {gw.transport} :{gw.port} (pid {gw.proc.pid});"
            f" {len(dialects)} dialects checked; {runs} runs, about {eta:.0f} s",
            file=sys.stderr,
        )
        for mode in modes:
            for conns in levels:
                for dialect in dialects:
                    path = DIALECTS[dialect][0]
                    row = measure(
                        mode,
                        conns,
                        dialect,
                        gw.port,
                        mock.pid,
                        gw,
                        args,
                        path=path,
                        dialect=dialect,
                    )
                    rows.append(row)
                    print(f"  {label(row)}: {row.run.rps:,.0f} req/s", file=sys.stderr)

    out = [
        "",
        f"Switchyard dialects: gateway {args.transport}, wrk -t{args.threads}, "
        f"{args.duration:g} s per run after {args.warmup:g} s warm-up, {os.cpu_count()} CPUs, "
        f"stream = {CHUNKS} content chunks",
        "",
        *(f"  {d:<16} {DIALECTS[d][0]:<22} {DIALECTS[d][1]}" for d in dialects),
        "",
    ]
    report(rows, out)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
