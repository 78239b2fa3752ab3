"""The shipped deploy/nginx.conf, run by the real nginx in front of test replicas.

The test copy differs from the shipped file only where a test must: the ``listen`` line
(a free loopback port) and the upstream ``server`` lines (the replicas' ports); each is
replaced exactly once or the helper fails, so a reshaped config cannot go untested. The
rest (a temporary prefix, pid and temp paths, ``daemon off``, logs in the temp dir) lives
in a wrapping main config. When the tests run as root, nginx runs as ``nobody``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import ROOT, free_port

SHIPPED = ROOT / "deploy" / "nginx.conf"
_UPSTREAM_SERVER = re.compile(r"^(\s*)server\s+switchyard-\d+:\d+([^;]*);", re.MULTILINE)
_LISTEN = re.compile(r"^(\s*)listen\s+\d+;", re.MULTILINE)


def nginx_binary() -> str:
    """The nginx executable (Debian's ``nginx`` package, installed by ``make setup``)."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise RuntimeError("nginx is not installed: run `make setup` (Debian package nginx)")
    return found


_PROXIED = "        proxy_pass http://switchyard;\n"


def config_copy(upstream_ports: list[int], listen_port: int, *, add_headers: str = "") -> str:
    """The shipped config with its listen port and replica addresses replaced, and
    ``add_headers`` (``add_header`` lines a test reads) in the proxied location."""
    text = SHIPPED.read_text(encoding="utf-8")
    if add_headers:
        if text.count(_PROXIED) != 1:
            raise AssertionError("deploy/nginx.conf: expected one `proxy_pass http://switchyard;`")
        text = text.replace(_PROXIED, _PROXIED + f"        {add_headers}\n")
    servers = _UPSTREAM_SERVER.findall(text)
    if len(servers) != 2:
        raise AssertionError(f"deploy/nginx.conf: expected 2 upstream servers, found {servers}")
    indent, options = servers[0]
    replicas = "\n".join(f"{indent}server 127.0.0.1:{port}{options};" for port in upstream_ports)
    seen = iter(range(len(servers)))
    text = _UPSTREAM_SERVER.sub(lambda _: replicas if next(seen) == 0 else "", text)
    text, listens = _LISTEN.subn(rf"\g<1>listen 127.0.0.1:{listen_port};", text)
    if listens != 1:
        raise AssertionError(f"deploy/nginx.conf: expected one `listen PORT;`, found {listens}")
    return text


@dataclass
class RunningNginx:
    url: str
    port: int
    prefix: Path

    def error_log(self) -> str:
        return (self.prefix / "error.log").read_text(errors="replace")


@contextmanager
def serve_nginx(
    upstream_ports: list[int], *, add_headers: str = "", startup_timeout_s: float = 20.0
) -> Iterator[RunningNginx]:
    """nginx with the shipped config in front of ``upstream_ports``, until the block ends
    (``add_headers``: see ``config_copy``)."""
    binary = nginx_binary()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="switchyard-nginx-") as scratch:
        prefix = Path(scratch)
        prefix.chmod(0o777)  # nginx may run as nobody: its logs and temp files go here
        (prefix / "switchyard.conf").write_text(
            config_copy(upstream_ports, port, add_headers=add_headers)
        )
        temp = "\n".join(
            f"    {kind}_temp_path {prefix / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (prefix / "nginx.conf").write_text(
            f"daemon off;\nworker_processes 1;\npid {prefix / 'nginx.pid'};\n"
            f"error_log {prefix / 'error.log'} info;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n    access_log {prefix / 'access.log'};\n{temp}\n"
            f"    include {prefix / 'switchyard.conf'};\n}}\n"
        )
        command = [binary, "-p", str(prefix), "-e", str(prefix / "error.log")]
        command += ["-c", str(prefix / "nginx.conf")]
        as_nobody = {"user": "nobody", "group": "nogroup"} if os.geteuid() == 0 else {}
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, **as_nobody)  # type: ignore[call-overload]
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t refused the test copy:\n{check.stderr}")
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, **as_nobody)  # type: ignore[call-overload]
        running = RunningNginx(f"http://127.0.0.1:{port}", port, prefix)
        try:
            _wait_listening(proc, running, startup_timeout_s)
            yield running
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_listening(proc: subprocess.Popen[bytes], running: RunningNginx, timeout_s: float) -> None:
    """Until nginx accepts connections; by connecting only, so that no request reaches
    (and no failure marks) a replica before the test sends its own."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited:\n{running.error_log()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", running.port), timeout=2).close()
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not listen in {timeout_s:g} s")
        time.sleep(0.05)
