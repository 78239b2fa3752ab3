"""Throwaway PostgreSQL and Redis servers for the test session.

Each is started on first use, once per session, on a free loopback port with its files in a
temporary directory, and stopped and removed when the session ends (or, failing that, when
the interpreter exits: ``atexit``; a killed pytest takes them with it through the
parent-death signal, and the next session sweeps any directory left behind).

Nothing here touches a server already running on the machine. To use one anyway, set
``SWITCHYARD_TEST_POSTGRES_URL`` / ``SWITCHYARD_TEST_REDIS_URL``; then nothing is started.

PostgreSQL refuses to run as root, so under root its processes run as the unprivileged
``postgres`` user (the Debian package's), or as ``switchyard-test``, created when neither
exists. The binaries are found on PATH or in Debian's ``/usr/lib/postgresql/<ver>/bin``;
``make system-deps`` installs the packages when they are missing.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

POSTGRES_ENV = "SWITCHYARD_TEST_POSTGRES_URL"
REDIS_ENV = "SWITCHYARD_TEST_REDIS_URL"
FALLBACK_USER = "switchyard-test"
ACCOUNT_CANDIDATES = ("postgres", FALLBACK_USER)
"""Under root, PostgreSQL runs as the first of these that exists (else FALLBACK_USER, created)."""
DIR_PREFIX = "switchyard-test-"
STARTUP_TIMEOUT_S = 60.0
_PR_SET_PDEATHSIG = 1


class ServiceUnavailableError(RuntimeError):
    """A test server could not be found or started (the message says how to fix it)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_postgres_binary(name: str) -> str | None:
    """``name`` (initdb, postgres, ...) on PATH, else the newest Debian versioned one."""
    found = shutil.which(name)
    if found:
        return found

    def version(path: str) -> tuple[int, ...]:
        part = path.split("/")[4]
        return tuple(int(p) for p in part.split(".") if p.isdigit())

    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version)
    return candidates[-1] if candidates else None


def _require(path: str | None, name: str, package: str) -> str:
    if path is None:
        raise ServiceUnavailableError(
            f"{name} not found (on PATH or in /usr/lib/postgresql/*/bin): "
            f"install the Debian package {package!r} (`make system-deps`), "
            f"or point {POSTGRES_ENV if package == 'postgresql' else REDIS_ENV} at a server"
        )
    return path


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the test process dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class RunAs:
    """The account a server's processes run under (``None`` fields: the current one)."""

    user: str | None = None
    uid: int | None = None
    gid: int | None = None

    def popen_kwargs(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def postgres_account() -> RunAs:
    """Whom PostgreSQL runs as: ourselves, or under root an unprivileged system user."""
    if os.geteuid() != 0:
        return RunAs()
    for name in ACCOUNT_CANDIDATES:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return RunAs(name, entry.pw_uid, entry.pw_gid)
    useradd = shutil.which("useradd") or shutil.which("useradd", path="/usr/sbin:/sbin")
    if useradd is None:
        raise ServiceUnavailableError(
            "running as root, and useradd is missing: cannot make "
            f"an unprivileged user ({FALLBACK_USER}) for PostgreSQL"
        )
    subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            FALLBACK_USER,
        ],
        check=True,
        capture_output=True,
    )
    entry = pwd.getpwnam(FALLBACK_USER)
    return RunAs(FALLBACK_USER, entry.pw_uid, entry.pw_gid)


def _temp_parent() -> str:
    """A temp root every user can traverse (TMPDIR may be private to root)."""
    parent = tempfile.gettempdir()
    path = parent
    while path != "/":
        if not os.stat(path).st_mode & 0o001:
            return "/tmp"
        path = os.path.dirname(path)
    return parent


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_dirs(parent: str) -> None:
    """Remove the directories of earlier sessions whose test process is gone."""
    for path in glob.glob(os.path.join(parent, DIR_PREFIX + "*")):
        try:
            with open(os.path.join(path, "owner.pid")) as handle:
                owner = int(handle.read().strip())
        except (OSError, ValueError):
            continue
        if not _pid_alive(owner):
            shutil.rmtree(path, ignore_errors=True)


def make_service_dir(kind: str, account: RunAs) -> str:
    parent = _temp_parent()
    sweep_stale_dirs(parent)
    path = tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{kind}-", dir=parent)
    with open(os.path.join(path, "owner.pid"), "w") as handle:
        handle.write(str(os.getpid()))
    if account.uid is not None and account.gid is not None:
        os.chown(path, account.uid, account.gid)
    return path


@dataclass
class Service:
    """A running server process; ``stop`` ends it and removes its directory."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    directory: str
    log_path: str
    stop_signal: int = signal.SIGINT
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            with open(self.log_path, errors="replace") as handle:
                return handle.read()[-chars:]
        except OSError:
            return ""


def wait_ready(service: Service, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready():
        if service.process.poll() is not None:
            raise ServiceUnavailableError(
                f"{service.name} exited with {service.process.returncode} while starting:\n"
                + service.log_tail()
            )
        if time.monotonic() > deadline:
            raise ServiceUnavailableError(
                f"{service.name} not ready after {STARTUP_TIMEOUT_S}s:\n" + service.log_tail()
            )
        time.sleep(0.02)


def spawn_logged(
    argv: list[str], account: RunAs, cwd: str, log_path: str
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    with open(log_path, "ab") as log:
        if account.uid is not None:
            os.chown(log_path, account.uid, account.gid or -1)
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # one prctl call: safe between fork and exec
            **account.popen_kwargs(),
        )


def start_postgres() -> Service:
    """initdb a fresh cluster in a temp dir and run it on 127.0.0.1:<free port>."""
    initdb = _require(find_postgres_binary("initdb"), "initdb", "postgresql")
    sibling = os.path.join(os.path.dirname(os.path.realpath(initdb)), "postgres")
    # The server must be initdb's own version: its sibling first.
    postgres = sibling if os.path.exists(sibling) else find_postgres_binary("postgres")
    postgres = _require(postgres, "postgres", "postgresql")
    account = postgres_account()
    directory = make_service_dir("pg", account)
    data = os.path.join(directory, "data")
    log_path = os.path.join(directory, "server.log")
    init_log = os.path.join(directory, "initdb.log")
    init = spawn_logged(
        [
            initdb,
            "-D",
            data,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ],
        account,
        directory,
        init_log,
    )
    if init.wait() != 0:
        with open(init_log, errors="replace") as handle:
            output = handle.read()[-3000:]
        shutil.rmtree(directory, ignore_errors=True)
        raise ServiceUnavailableError(f"initdb failed:\n{output}")
    last_error: ServiceUnavailableError | None = None
    pid_file = os.path.join(data, "postmaster.pid")
    for _attempt in range(3):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pid_file)  # a killed attempt's, which may still say "ready"
        port = free_port()
        argv = [
            postgres, "-D", data, "-p", str(port), "-h", "127.0.0.1", "-k", directory,
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=300", "-c", "shared_buffers=32MB",
            "-c", "max_parallel_workers_per_gather=0", "-c", "log_min_messages=warning",
        ]  # fmt: skip
        service = Service(
            "postgres", f"postgresql://postgres@127.0.0.1:{port}",
            spawn_logged(argv, account, directory, log_path), directory, log_path,
        )  # fmt: skip
        try:
            wait_ready(service, functools.partial(_postmaster_ready, pid_file))
        except ServiceUnavailableError as exc:
            last_error = exc
            service.process.kill()
            service.process.wait()
            continue
        return service
    shutil.rmtree(directory, ignore_errors=True)
    assert last_error is not None
    raise last_error


def _postmaster_ready(pid_file: str) -> bool:
    """PostgreSQL marks its pid file's 8th line ``ready`` once it accepts connections."""
    try:
        with open(pid_file) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[7].strip() == "ready"


REDIS_DATABASES = 16
"""Redis's default count of logical dbs (an override server has them too); ``fresh_redis_url``
hands out 1..15 in turn, leaving db 0 to ``redis_url``."""


def start_redis() -> Service:
    """redis-server on 127.0.0.1:<free port>, no persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ServiceUnavailableError(
            "redis-server not found on PATH: install the Debian package 'redis-server' "
            f"(`make system-deps`), or point {REDIS_ENV} at a server"
        )
    directory = make_service_dir("redis", RunAs())
    log_path = os.path.join(directory, "server.log")
    last_error: ServiceUnavailableError | None = None
    for _attempt in range(3):
        port = free_port()
        argv = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", directory, "--databases", str(REDIS_DATABASES),
            "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        service = Service(
            "redis", f"redis://127.0.0.1:{port}", spawn_logged(argv, RunAs(), directory, log_path),
            directory, log_path, stop_signal=signal.SIGTERM,
        )  # fmt: skip
        try:
            wait_ready(service, functools.partial(_redis_pongs, port))
        except ServiceUnavailableError as exc:
            last_error = exc
            service.process.kill()
            service.process.wait()
            continue
        return service
    shutil.rmtree(directory, ignore_errors=True)
    assert last_error is not None
    raise last_error


def _redis_pongs(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class TestServices:
    """The session's servers, each started on first request, all stopped by ``close``."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._services: dict[str, Service] = {}
        self._urls: dict[str, str] = {}
        atexit.register(self.close)

    def _get(self, name: str, env: str, start: Callable[[], Service]) -> str:
        with self._lock:
            if name not in self._urls:
                override = os.environ.get(env)
                if override:
                    self._urls[name] = override.rstrip("/")
                else:
                    service = start()
                    self._services[name] = service
                    self._urls[name] = service.url
            return self._urls[name]

    def postgres_url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT`` (or the override, as given)."""
        return self._get("postgres", POSTGRES_ENV, start_postgres)

    def redis_url(self) -> str:
        """``redis://127.0.0.1:PORT`` (or the override, as given)."""
        return self._get("redis", REDIS_ENV, start_redis)

    def started(self) -> dict[str, Service]:
        """The servers this session started itself (not the overrides)."""
        return dict(self._services)

    def close(self) -> None:
        with self._lock:
            services, self._services = self._services, {}
            self._urls.clear()
        for service in services.values():
            service.stop()
