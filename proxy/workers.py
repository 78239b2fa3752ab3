"""``switchyard serve --workers N``: N processes on one host sharing one listening socket.

The parent binds the socket once and spawns N workers; each loads the config file
itself and runs the ordinary ``GatewayServer`` (``proxy.server``) on the inherited socket,
so every worker keeps the single-process behaviour: the drain on SIGTERM, the head
deadline, the concurrency limit (per worker), its own state store connections, upstream
client and adapters. The kernel hands each new connection to one of them.

The parent supervises:

- SIGTERM or SIGINT: every worker gets SIGTERM and drains as a single server would; the
  parent waits for all of them and exits 0.
- SIGHUP: forwarded to every worker, each of which reloads its configuration
  (``proxy.reload``).
- A worker that dies is replaced (logged with its exit code), so one crash does not
  take capacity away for good. A replacement that dies before it served (the state
  database is down for a while) is tried again after a back-off that doubles up to
  ``_MOST_BACKOFF_S`` and starts over once one serves; the healthy workers go on
  serving meanwhile. Only at start-up does a worker that dies before it served stop
  them all, and the parent exit 1: the configuration cannot start, and restarting
  would fail the same way for ever.
- Workers die with the parent (``PR_SET_PDEATHSIG`` on Linux): a ``kill -9`` of the
  parent leaves no orphan holding the port.

uvicorn's ``uvicorn.supervisors.Multiprocess`` was the first candidate and does not fit:
its worker target is hard-wired to a plain ``uvicorn.Server`` built from a
``uvicorn.Config`` (``Process.server``, since 0.3x), whose app must be an import string,
so ``GatewayServer`` (the drain, the protocol with its deadlines) cannot be the worker;
its SIGHUP restarts every worker, where this one reloads them in place; and its
``Process`` signature has changed between the releases ``uvicorn>=0.30`` allows. This
module keeps only what it needs of it: spawn-safe socket sharing and a polling loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from types import FrameType

log = logging.getLogger("switchyard.workers")

_POLL_S = 0.2
_FIRST_BACKOFF_S = 0.5
_MOST_BACKOFF_S = 30.0
_PR_SET_PDEATHSIG = 1

multiprocessing.allow_connection_pickling()  # sockets travel to spawned workers
_spawn = multiprocessing.get_context("spawn")


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker needs to start: picklable, since workers are spawned."""

    config: str | None
    host: str | None
    port: int | None
    log_level: str


def bind_socket(host: str, port: int) -> socket.socket:
    """The listening socket every worker serves, bound once here."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGTERM this worker when its parent dies (the worker then drains)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run_worker(spec: WorkerSpec, sock: socket.socket, started: Event, parent: int) -> None:
    """One worker: load the config, build the server, serve ``sock`` until told to stop."""
    # Until the server installs its own handlers, a SIGHUP must neither end the worker
    # nor be lost: the file it asks to re-read may be newer than the one loaded here.
    hangup = threading.Event()
    signal.signal(signal.SIGHUP, lambda sig, frame: hangup.set())
    _die_with_parent(parent)
    from proxy.logs import configure_logging
    from proxy.server import build_server
    from proxy.settings import load_settings

    configure_logging(spec.log_level.upper())
    settings = load_settings(spec.config)
    server = build_server(settings, host=spec.host, port=spec.port, log_level=spec.log_level)
    server.on_started = started.set
    server.hangup_before_start = hangup.is_set
    server.run(sockets=[sock])


class _Worker:
    def __init__(self, spec: WorkerSpec, sock: socket.socket, *, replacement: bool = False) -> None:
        self.replacement = replacement
        self.started = _spawn.Event()
        self.process: SpawnProcess = _spawn.Process(
            target=run_worker,
            args=(spec, sock, self.started, os.getpid()),
            name="switchyard-worker",
        )
        self.process.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def signal(self, sig: int) -> None:
        if self.process.exitcode is None and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


class Supervisor:
    """The parent of ``--workers N`` (see the module docstring)."""

    def __init__(self, spec: WorkerSpec, workers: int, host: str, port: int) -> None:
        self.spec = spec
        self.count = workers
        self.host = host
        self.port = port
        self.workers: list[_Worker] = []
        self._backoff: dict[int, float] = {}
        """Slot -> the wait before the next replacement, after ones that did not start."""
        self._restart_at: dict[int, float] = {}
        """Slot -> when its replacement is started (the slot is empty meanwhile)."""
        self._stop = threading.Event()
        self._hangups = 0
        self.failed = False

    def _on_stop(self, sig: int, frame: FrameType | None) -> None:
        self._stop.set()

    def _on_hangup(self, sig: int, frame: FrameType | None) -> None:
        self._hangups += 1

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit status (0, or 1 when a worker could not
        start)."""
        sock = bind_socket(self.host, self.port)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hangup)
        log.info("starting %d workers on %s:%d", self.count, self.host, self.port)
        try:
            self.workers = [_Worker(self.spec, sock) for _ in range(self.count)]
            forwarded = 0
            while not self._stop.wait(_POLL_S):
                if self._hangups != forwarded:
                    forwarded = self._hangups
                    log.info("SIGHUP: asking every worker to reload its configuration")
                    for worker in self.workers:
                        worker.signal(signal.SIGHUP)
                self._replace_dead(sock)
        finally:
            self._stop_all()
            sock.close()
        return 1 if self.failed else 0

    def _replace_dead(self, sock: socket.socket) -> None:
        now = time.monotonic()
        for index, worker in enumerate(self.workers):
            if index in self._restart_at:
                if now >= self._restart_at[index]:
                    del self._restart_at[index]
                    self.workers[index] = _Worker(self.spec, sock, replacement=True)
                continue
            if worker.process.is_alive():
                if worker.started.is_set():
                    self._backoff.pop(index, None)
                continue
            worker.process.join()
            code = worker.process.exitcode
            if worker.started.is_set():
                log.warning("worker %s died (exit code %s); starting another", worker.pid, code)
                self.workers[index] = _Worker(self.spec, sock, replacement=True)
                continue
            if not worker.replacement:
                log.error("worker %s exited (code %s) before it served; stopping", worker.pid, code)
                self.failed = True
                self._stop.set()
                return
            wait = self._backoff.get(index, _FIRST_BACKOFF_S)
            self._backoff[index] = min(wait * 2, _MOST_BACKOFF_S)
            self._restart_at[index] = now + wait
            log.warning(
                "replacement worker %s exited (code %s) before it served; next try in %g s",
                worker.pid,
                code,
                wait,
            )

    def _stop_all(self) -> None:
        for worker in self.workers:
            worker.signal(signal.SIGTERM)
        for worker in self.workers:
            worker.process.join()
        log.info("all workers stopped")


def serve_workers(spec: WorkerSpec, workers: int, host: str, port: int) -> int:
    if sys.platform == "win32":  # pragma: no cover
        raise SystemExit("switchyard: --workers needs a POSIX system")
    return Supervisor(spec, workers, host, port).run()
