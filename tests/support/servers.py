"""Run real ASGI apps under uvicorn on a free loopback port, in a background thread.

Used for the gateway itself and for the protocol-faithful test upstreams: tests talk
to them over real sockets, exactly as clients and upstreams do in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import uvicorn

from proxy.app import create_app
from proxy.server import build_server
from proxy.settings import Settings, settings_from_mapping

STREAM_ENDED_BY_SHUTDOWN = {
    "message": "The server is shutting down; the stream was ended before it finished.",
    "type": "server_error",
    "param": None,
    "code": "server_shutting_down",
}
"""The error event that ends a stream still running when the server shuts down."""


async def answer_lifespan(receive: Any, send: Any) -> None:
    """The ASGI lifespan handshake, for test apps with nothing to start or stop."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


async def read_body(receive: Any) -> bytes:
    """A whole ASGI request body."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Addressable(Protocol):
    """Anything a client can be pointed at: a server in this process, a subprocess, a
    load balancer."""

    @property
    def url(self) -> str:
        """``http://host:port``, no trailing slash."""
        ...


class RunningServer:
    def __init__(self, app: Any, port: int) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: uvicorn.Server | None = None


@contextmanager
def serve_asgi(
    app: Any, *, port: int | None = None, startup_timeout: float = 60.0
) -> Iterator[RunningServer]:
    """Serve ``app`` until the block ends; the lifespan runs, as in production."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="asyncio",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    with serve_uvicorn(uvicorn.Server(config), startup_timeout=startup_timeout) as running:
        yield running


@contextmanager
def serve_switchyard(settings: Settings) -> Iterator[RunningServer]:
    """Switchyard as ``switchyard serve`` runs it (``proxy.server``: its HTTP protocol,
    limits and drain), in a thread; signals are the subprocess tests' business."""
    server = build_server(
        settings, host="127.0.0.1", port=free_port(), loop="asyncio", log_level="warning"
    )
    with serve_uvicorn(server) as running:
        yield running


@contextmanager
def serve_uvicorn(
    server: uvicorn.Server, *, startup_timeout: float = 60.0
) -> Iterator[RunningServer]:
    """Run ``server`` in a background thread until the block ends."""
    port = server.config.port
    running = RunningServer(server.config.app, port)
    running.server = server

    def run() -> None:
        loop = asyncio.new_event_loop()
        running.loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.serve())
        loop.close()

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"server on port {port} failed to start")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"server on port {port} did not start in {startup_timeout}s")
        time.sleep(0.01)
    try:
        yield running
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def serve_gateway(config: dict[str, Any] | Settings) -> Iterator[RunningServer]:
    """Start Switchyard itself from a config mapping (as the YAML file would hold).

    A mapping without ``server.data_dir`` gets a temporary one of its own: the default
    (``./data``, the working directory) would make every such test gateway share one
    state database and media directory, in the checkout."""
    with tempfile.TemporaryDirectory(prefix="switchyard-data-") as scratch:
        if isinstance(config, Settings):
            settings = config
        else:
            server = dict(config.get("server") or {})
            server.setdefault("data_dir", scratch)
            settings = settings_from_mapping({**config, "server": server}, "<test>")
        with serve_asgi(create_app(settings)) as running:
            yield running


ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServedProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


@contextmanager
def serve_process(
    config: dict[str, Any],
    workdir: Path,
    *,
    startup_timeout_s: float = 60.0,
    port: int | None = None,
    args: Sequence[str] = (),
) -> Iterator[ServedProcess]:
    """``switchyard serve`` in a subprocess, running this checkout's code, with ``config``
    (its ``server.port`` is set to ``port``, else a free one), the extra command-line
    ``args`` (``--workers 2``) and its output in ``workdir``; killed when the block ends
    unless the test stopped it, with every process it started (its own process group).
    For what needs a real process: signals, ``kill -9``, worker processes. A given
    ``port`` lets a restarted process keep the address a load balancer knows it by."""
    port = port or free_port()
    config = {**config, "server": {**(config.get("server") or {}), "port": port}}
    config_path = workdir / "switchyard.yaml"
    config_path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    log = workdir / "switchyard.log"
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", "--config", str(config_path), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env={**os.environ, "PYTHONPATH": pythonpath},
            start_new_session=True,
        )
    served = ServedProcess(proc, f"http://127.0.0.1:{port}", log)
    try:
        _wait_healthy(served, startup_timeout_s)
        yield served
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the process and any worker it started
        proc.wait()


def _wait_healthy(served: ServedProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if served.proc.poll() is not None:
            raise RuntimeError(f"switchyard serve exited:\n{served.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{served.url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"switchyard serve did not start in {timeout_s:g} s")
        time.sleep(0.05)
