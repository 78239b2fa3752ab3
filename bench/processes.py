"""Processes for bench/overhead.py: the mock upstream, the gateways, and reading their
CPU time and memory from /proc."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MODEL = "bench"
CHUNKS = 20
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- process helpers


def cpu_seconds(pid: int) -> float:
    """user+sys CPU time of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) in MiB."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RssSampler:
    """Polls VmRSS of some processes in a thread; keeps the maximum of each."""

    def __init__(self, pids: list[int], interval: float = 0.05) -> None:
        self.pids = pids
        self.interval = interval
        self.peak: dict[int, float] = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                with suppress(OSError):
                    self.peak[pid] = max(self.peak[pid], rss_mb(pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- the two servers


def start_mock(stack: ExitStack) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, str(BENCH / "mock_upstream.py"), "--port", "0", "--chunks", str(CHUNKS)],
        stdout=subprocess.PIPE,
    )
    stack.callback(stop_process, proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "READY":
        raise SystemExit(f"mock upstream did not start: {line}")
    return proc, int(line[1])


@dataclass
class Gateway:
    transport: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    rss_idle_mb: float = 0.0
    rss_peak_mb: float | None = None
    rss_after_mb: float = 0.0
    scenario: str = "plain"
    """``plain``, ``tenancy`` (in process) or ``redis`` (tenancy with Redis)."""
    engine: str = ""
    """The HTTP client engine (``transport`` is the label, which names the scenario)."""
    key: str = "sk-bench"
    """What wrk sends as the bearer key."""
    stream_chunks: int = CHUNKS
    """Content chunks its streamed answer has (a replay from the cache: one)."""


def start_gateway(
    stack: ExitStack,
    workdir: Path,
    transport: str,
    upstream_port: int,
    log_level: str,
    *,
    source: Path | None = None,
    label: str | None = None,
    master_key: str | None = None,
    state: dict[str, object] | None = None,
    model_options: str = "",
) -> Gateway:
    """``switchyard serve`` on a free port; ``source``: run that checkout's code instead
    of this one's (a baseline revision), named ``label`` in the results. ``master_key``
    and ``state`` (the ``state:`` section's fields) turn tenancy on; each gateway has its
    own data directory, so their SQLite state stores are their own. ``model_options``:
    more YAML lines for the model entry (``    cache: {ttl_s: 3600}``)."""
    port = free_port()
    label = label or transport
    config = workdir / f"switchyard-{label}.yaml"
    tenancy = (f"  master_key: {master_key}\n" if master_key else "") + (
        "state:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in state.items()) if state else ""
    )
    config.write_text(
        # The built-in models are left out: the bench measures the proxy path alone, as
        # a config file did before built-ins were kept (a baseline may not know the key).
        ("" if source else "defaults: false\n") + "server:\n"
        "  host: 127.0.0.1\n"
        f"  port: {port}\n"
        f"  data_dir: {workdir / ('data-' + label.replace('@', '-'))}\n" + tenancy + "http:\n"
        f"  transport: {transport}\n"
        "models:\n"
        f"  - name: {MODEL}\n"
        "    adapter: openai\n"
        "    model: mock-model\n"
        f"    base_url: http://127.0.0.1:{upstream_port}/v1\n"
        "    api_key: sk-mock\n" + model_options,
        encoding="utf-8",
    )
    log = workdir / f"switchyard-{label}.log"
    # ``-m proxy.cli`` with this checkout (or ``source``) first on the path: the venv's
    # ``switchyard`` script imports whichever tree the venv was installed from, which
    # need not be the one being measured (a git worktree shares the main checkout's venv).
    command = [sys.executable, "-m", "proxy.cli"]
    env = {**os.environ, "PYTHONPATH": str(source or ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "serve", "--config", str(config), "--log-level", log_level],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env=env,
        )
    stack.callback(stop_process, proc)
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"gateway ({label}) exited:\n{log.read_text()[-3000:]}")
        try:
            status, _, _ = http_request(port, "GET", "/health")
            if status == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"gateway ({label}) not ready after 60 s")
        time.sleep(0.1)
    time.sleep(0.5)  # let the lifespan settle before reading idle memory
    return Gateway(label, proc, port, log, rss_idle_mb=rss_mb(proc.pid))


def http_request(
    port: int,
    method: str,
    path: str,
    body: dict[str, object] | None = None,
    key: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"content-type": "application/json"} if payload else {}
        if key:
            headers["authorization"] = f"Bearer {key}"
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def check_answers(
    port: int, label: str, key: str | None = None, stream_chunks: int = CHUNKS
) -> None:
    """Fail loudly unless the target answers both request kinds correctly."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}]}
    status, _, content = http_request(port, "POST", "/v1/chat/completions", body, key)
    if status != 200 or not json.loads(content).get("choices"):
        raise SystemExit(f"{label}: bad non-streaming answer {status}: {content[:300]!r}")
    status, headers, content = http_request(
        port, "POST", "/v1/chat/completions", {**body, "stream": True}, key
    )
    events = [e for e in content.split(b"\n\n") if e.strip()]
    data = [e.removeprefix(b"data: ") for e in events]
    chunks = [json.loads(d) for d in data[:-1]]
    content_chunks = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    if (
        status != 200
        or not headers.get("content-type", "").startswith("text/event-stream")
        or data[-1:] != [b"[DONE]"]
        or len(content_chunks) != stream_chunks
    ):
        raise SystemExit(f"{label}: bad stream {status} {headers}: {content[:300]!r}")


# ---------------------------------------------------------------- tenancy

#: Limits that are checked and counted on every request but never reached in a run.
NEVER = 10**9


def provision_key(port: int, master_key: str) -> str:
    """A team and a virtual key in it, made through the admin API with the master key,
    both with RPM, TPM (and the key with max_parallel) limits too high to trigger, so
    every limit is checked and counted; returns the key's secret."""

    def admin(path: str, body: dict[str, object]) -> dict[str, object]:
        status, _, content = http_request(
            port, "POST", f"/v1/switchyard/admin/{path}", body, master_key
        )
        if status != 200:
            raise SystemExit(f"admin {path}: {status} {content[:500]!r}")
        answer: dict[str, object] = json.loads(content)
        return answer

    limits = {"rpm_limit": NEVER, "tpm_limit": NEVER}
    team = admin("teams", {"name": "bench", **limits})
    key = admin("keys", {"name": "bench", "team_id": team["id"], "max_parallel": NEVER, **limits})
    return str(key["key"])
