"""Two ``switchyard serve`` replicas as a team runs them: shared state, nginx in front.

``start_replicas`` brings up, for one block:

- a protocol-faithful OpenAI upstream (``FakeOpenAI``) serving the chat and embedding
  models, so every step is fast and what reached the model can be asserted; a fake
  ComfyUI too (``comfyui=True``), as the image and video models;
- a real Chroma server (``chroma run``, from the chromadb package) for ``rag.chroma_url``;
- replicas ``a`` and ``b``: real subprocesses (``serve_process``) with the same config,
  sharing a PostgreSQL database, a Redis database, the Chroma server and one
  ``server.data_dir`` (the media volume). Each names itself to the fake upstream
  (``REPLICA_UPSTREAM_HEADER``), so a test sees which process called the model. They
  start at the same time, as a rollout does;
- real nginx (the Debian package) running the shipped deploy/nginx.conf (tests/support/nginx.py)
  with its round-robin ``upstream`` over both.

A test reaches the load balancer through ``cluster.lb`` and each replica directly
through ``cluster.a`` / ``cluster.b`` (each has ``.url``, which is all the tenancy
helpers need). ``cluster.served_by(response)`` says which replica answered a request
that went through nginx, ``cluster.called_by(record)`` which one made a recorded model
call. ``Replica.kill()`` is ``kill -9``; ``Replica.start()`` starts it again on the same
port, so nginx finds it where it was.

Extending: ``overlay`` is deep-merged into both replicas' config (mappings merge, other
values replace), ``per_replica={"a": {...}}`` into one of them, and ``extra_models`` are
appended to the models as given; with ``comfyui=True`` (the default) the models
``IMAGE_MODEL`` and ``VIDEO_MODEL`` run on ``cluster.comfy``, a fake ComfyUI.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.fake_comfyui import FakeComfyUI, comfy_model, serve_comfyui
from tests.support.fake_openai import FakeOpenAI, Fault, Recorded, running_fake
from tests.support.nginx import RunningNginx, serve_nginx
from tests.support.servers import ServedProcess, free_port, serve_process
from tests.support.services import (
    RunAs,
    Service,
    ServiceUnavailableError,
    spawn_logged,
    wait_ready,
)
from tests.support.tenancy import MASTER_KEY, UPSTREAM_KEY

CHAT_MODEL = "chat"
"""The chat model every step uses (upstream id ``CHAT_UPSTREAM`` on the fake)."""
CHAT_UPSTREAM = "upstream-chat"
SLOW_CHAT_MODEL = "chat-slow"
"""The same chat model, answered ``SLOW_CHAT_DELAY_S`` late: requests stay in flight long
enough for a ``kill -9`` to catch some."""
SLOW_CHAT_UPSTREAM = "upstream-chat-slow"
SLOW_CHAT_DELAY_S = 1.0
REPLICA_UPSTREAM_HEADER = "x-test-replica"
"""Header each replica adds to its calls to the fake upstream: its name (``a``, ``b``)."""
EMBED_MODEL = "embed"
"""The RAG embedding model (upstream id ``EMBED_UPSTREAM``)."""
EMBED_UPSTREAM = "upstream-embed"
CACHED_CHAT_MODEL = "chat-cached"
"""The chat model with the response cache on (Redis-backed, so shared by the replicas)."""
IMAGE_MODEL = "sd"
VIDEO_MODEL = "wan"
JOB_HEARTBEAT_S, JOB_STALE_AFTER_S = 0.2, 1.5
RAG_JOB_THRESHOLD = 2
"""A directory index of more files than this runs as a job (``rag.index_job_threshold_files``)."""
PRICE = {"input_per_1m": 1000.0, "output_per_1m": 3000.0}
"""The chat models' price, so usage totals carry a cost that tests can recompute."""


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay`` laid over it: mappings merge key by key, anything else
    (lists included) replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def rag_index_dir(data_dir: Path) -> Path:
    """The folder below the shared ``data_dir`` that RAG may index (``rag.allowed_dirs``)."""
    return data_dir / "rag-index"


def replica_config(
    replica: str,
    *,
    database: str,
    redis_url: str,
    chroma_url: str,
    data_dir: Path,
    upstream_url: str,
    comfy_url: str | None = None,
    extra_models: list[dict[str, Any]] | None = None,
    overlay: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config of ``replica`` (``serve_process`` adds its port). Replicas run the same
    config except that each names itself to the fake upstream in ``REPLICA_UPSTREAM_HEADER``,
    so a test can tell which process made a model call."""

    def openai_model(name: str, upstream: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "adapter": "openai",
            "model": upstream,
            "base_url": upstream_url,
            "api_key": UPSTREAM_KEY,
            "timeout_s": 10,
            "headers": {REPLICA_UPSTREAM_HEADER: replica},
            **extra,
        }

    models = [
        openai_model(CHAT_MODEL, CHAT_UPSTREAM, price=PRICE),
        openai_model(SLOW_CHAT_MODEL, SLOW_CHAT_UPSTREAM, price=PRICE),
        openai_model(CACHED_CHAT_MODEL, CHAT_UPSTREAM, price=PRICE, cache={"ttl_s": 300}),
        openai_model(EMBED_MODEL, EMBED_UPSTREAM),
    ]
    if comfy_url is not None:
        models.append(comfy_model(IMAGE_MODEL, comfy_url, {"generate": "text-to-image.yaml"}))
        models.append(comfy_model(VIDEO_MODEL, comfy_url, {"video": "text-to-video.yaml"}))
    config: dict[str, Any] = {
        "defaults": False,
        "server": {
            "host": "127.0.0.1",
            "master_key": MASTER_KEY,
            "data_dir": str(data_dir),
            "trust_forwarded_headers": True,
            "drain_timeout_s": 2,
        },
        "state": {
            "database": database,
            "redis_url": redis_url,
            "usage_flush_interval_s": 0.2,
        },
        # A video job whose replica died is failed by the others within a few seconds.
        "media": {
            "job_heartbeat_s": JOB_HEARTBEAT_S,
            "job_stale_after_s": JOB_STALE_AFTER_S,
            "job_progress_write_s": 0.1,
        },
        "models": [*models, *(extra_models or [])],
        # Directory indexing reads the shared volume; past RAG_JOB_THRESHOLD files it is a
        # job, whose replica's death the other notices as quickly as a video job's.
        "rag": {
            "chroma_url": chroma_url,
            "embedding_model": EMBED_MODEL,
            "top_k": 3,
            "allowed_dirs": [str(rag_index_dir(data_dir))],
            "index_job_threshold_files": RAG_JOB_THRESHOLD,
            "index_job_heartbeat_s": JOB_HEARTBEAT_S,
            "index_job_stale_after_s": JOB_STALE_AFTER_S,
        },
        "sessions": {},
    }
    return deep_merge(config, overlay or {})


# ----------------------------------------------------------------------------- replicas


@dataclass
class Replica:
    """One ``switchyard serve`` process on a fixed port; ``kill`` and ``start`` again."""

    name: str
    port: int
    config: dict[str, Any]
    workdir: Path
    served: ServedProcess | None = None
    starts: int = 0
    _stack: ExitStack = field(default_factory=ExitStack)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """How nginx names it in ``$upstream_addr``."""
        return f"127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.served is not None and self.served.proc.poll() is None

    @property
    def log(self) -> Path | None:
        return self.served.log if self.served is not None else None

    def start(self) -> None:
        """Start (again) and wait until ``/health`` answers; each start logs to its own
        ``run-N`` folder, so the log of a killed run stays readable."""
        assert not self.alive, f"replica {self.name} is running"
        self._stack.close()
        self.starts += 1
        run_dir = self.workdir / f"run-{self.starts}"
        run_dir.mkdir(parents=True)
        self._stack = ExitStack()
        self.served = self._stack.enter_context(
            serve_process(self.config, run_dir, port=self.port, startup_timeout_s=180)
        )

    def kill(self) -> None:
        """``kill -9``: no drain, no shutdown flush."""
        assert self.served is not None and self.alive, f"replica {self.name} is not running"
        os.kill(self.served.proc.pid, signal.SIGKILL)
        self.served.proc.wait(30)

    def stop(self) -> None:
        self._stack.close()


# -------------------------------------------------------------------------------- chroma


def chroma_binary() -> str:
    """The ``chroma`` command of the chromadb package installed beside this Python."""
    beside = Path(sys.executable).with_name("chroma")
    found = str(beside) if beside.exists() else shutil.which("chroma")
    if found is None:
        raise ServiceUnavailableError("the chroma command (chromadb package) is not installed")
    return found


def _heartbeats(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def serve_chroma(directory: Path, port: int | None = None) -> Iterator[str]:
    """``chroma run`` on loopback ``port`` (else a free one) with its data in
    ``directory``; yields its URL once ``/api/v2/heartbeat`` answers."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [chroma_binary(), "run", "--path", str(directory / "data")]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    log_path = str(directory / "chroma.log")
    process = spawn_logged(argv, RunAs(), str(directory), log_path)
    service = Service("chroma", url, process, str(directory), log_path, signal.SIGTERM)
    try:
        wait_ready(service, lambda: _heartbeats(url))
        yield url
    finally:
        service.stop()


# --------------------------------------------------------------------------------- nginx

REPLICA_HEADER = "x-test-upstream"
"""Response header the test copy of the shipped nginx config adds: the replica
address(es) nginx tried for the request (``$upstream_addr``)."""
BALANCER_HEADERS = f"add_header {REPLICA_HEADER} $upstream_addr always;"


@dataclass
class Cluster:
    a: Replica
    b: Replica
    lb: RunningNginx
    upstream: FakeOpenAI
    """The fake OpenAI upstream behind the chat and embedding models (its requests are
    recorded: find a turn by its text)."""
    upstream_url: str
    chroma_url: str
    data_dir: Path
    """The media volume both replicas share."""
    comfy: FakeComfyUI | None
    started_in_s: float

    @property
    def replicas(self) -> tuple[Replica, Replica]:
        return (self.a, self.b)

    def replica(self, name: str) -> Replica:
        return {"a": self.a, "b": self.b}[name]

    def served_by(self, headers: Mapping[str, str]) -> str:
        """Which replica answered a request that went through nginx (the last one it
        tried, when the first refused the connection)."""
        tried = headers[REPLICA_HEADER].split(",")[-1].strip()
        for replica in self.replicas:
            if replica.address == tried:
                return replica.name
        raise AssertionError(f"nginx answered from {tried!r}, no replica of this cluster")

    @staticmethod
    def called_by(record: Recorded) -> str:
        """Which replica made a model call the fake upstream recorded."""
        return record.headers[REPLICA_UPSTREAM_HEADER]


@contextmanager
def start_replicas(
    workdir: Path,
    *,
    database: str,
    redis_url: str,
    comfyui: bool = True,
    extra_models: list[dict[str, Any]] | None = None,
    overlay: Mapping[str, Any] | None = None,
    per_replica: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[Cluster]:
    """The whole deployment (module doc) for the block; ``database`` and ``redis_url``
    should be fresh (``fresh_database``, ``fresh_redis_db`` in tests/conftest.py).
    ``per_replica`` (``{"a": {...}}``) is laid over one replica's config after ``overlay``."""
    began = time.monotonic()
    faults = {SLOW_CHAT_UPSTREAM: Fault("delay", seconds=SLOW_CHAT_DELAY_S)}
    with ExitStack() as stack:
        upstream, upstream_url = stack.enter_context(running_fake(faults))
        comfy = stack.enter_context(serve_comfyui()) if comfyui else None
        chroma_port = free_port()
        chroma_url = f"http://127.0.0.1:{chroma_port}"
        data_dir = workdir / "shared-data"
        data_dir.mkdir()
        rag_index_dir(data_dir).mkdir()
        replicas = []
        for name in "ab":
            config = replica_config(
                name,
                database=database,
                redis_url=redis_url,
                chroma_url=chroma_url,
                data_dir=data_dir,
                upstream_url=upstream_url,
                comfy_url=comfy.url if comfy is not None else None,
                extra_models=extra_models,
                overlay=deep_merge(overlay or {}, (per_replica or {}).get(name, {})),
            )
            replicas.append(Replica(name, free_port(), config, workdir / f"replica-{name}"))
            stack.callback(replicas[-1].stop)
        a, b = replicas
        # All at once, as a rollout starts them (RAG opens its Chroma client on first use).
        # Chroma starts from this thread: its parent-death signal fires when the thread
        # that spawned it ends, and the pool's threads end after the start.
        with ThreadPoolExecutor(2) as pool:
            starting = [pool.submit(r.start) for r in replicas]
            stack.enter_context(serve_chroma(workdir / "chroma", chroma_port))
            for started in starting:
                started.result()
        ports = [a.port, b.port]
        lb = stack.enter_context(serve_nginx(ports, add_headers=BALANCER_HEADERS))
        yield Cluster(
            a, b, lb, upstream, upstream_url, chroma_url, data_dir, comfy,
            time.monotonic() - began,
        )  # fmt: skip
