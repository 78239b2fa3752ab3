"""The ``--workers`` supervisor's replacement rules, with scripted stand-ins for the
worker processes (the real ones are driven in tests/e2e/test_workers.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from proxy import workers
from proxy.workers import Supervisor, WorkerSpec


class FakeProcess:
    def __init__(self) -> None:
        self.exitcode: int | None = None

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self) -> None:
        pass


class FakeWorker:
    made: list[FakeWorker] = []

    def __init__(self, spec: Any, sock: Any, *, replacement: bool = False) -> None:
        self.replacement = replacement
        self.started = threading.Event()
        self.process = FakeProcess()
        self.pid = len(FakeWorker.made) + 100
        FakeWorker.made.append(self)

    def signal(self, sig: int) -> None:
        pass


@pytest.fixture
def supervisor(monkeypatch: pytest.MonkeyPatch) -> Supervisor:
    FakeWorker.made = []
    monkeypatch.setattr(workers, "_Worker", FakeWorker)
    clock = [1000.0]
    monkeypatch.setattr(workers.time, "monotonic", lambda: clock[0])
    chosen = Supervisor(WorkerSpec(None, None, None, "info"), 2, "127.0.0.1", 0)
    chosen.workers = [FakeWorker(None, None), FakeWorker(None, None)]
    for worker in chosen.workers:
        worker.started.set()
    chosen.clock = clock  # type: ignore[attr-defined]
    return chosen


def test_a_replacement_that_cannot_start_is_retried_with_back_off_not_fatal(
    supervisor: Supervisor,
) -> None:
    clock = supervisor.clock  # type: ignore[attr-defined]
    healthy, crashed = supervisor.workers
    crashed.process.exitcode = -9
    supervisor._replace_dead(None)  # type: ignore[arg-type]
    first = supervisor.workers[1]
    assert first is not crashed and first.replacement
    first.process.exitcode = 1  # the database is down: it dies before serving
    supervisor._replace_dead(None)  # type: ignore[arg-type]
    assert not supervisor.failed and not supervisor._stop.is_set()
    assert supervisor.workers[1] is first  # not replaced at once...
    clock[0] += 0.4
    supervisor._replace_dead(None)  # type: ignore[arg-type]
    assert supervisor.workers[1] is first
    clock[0] += 0.2  # ...but after the first back-off (0.5 s)
    supervisor._replace_dead(None)  # type: ignore[arg-type]
    second = supervisor.workers[1]
    assert second is not first
    second.process.exitcode = 1
    supervisor._replace_dead(None)  # type: ignore[arg-type]
    clock[0] += 0.9
    supervisor._replace_dead(None)  # type: ignore[arg-type]
    assert supervisor.workers[1] is second  # the back-off doubled to 1 s
    clock[0] += 0.2
    supervisor._replace_dead(None)  # type: ignore[arg-type]
    third = supervisor.workers[1]
    assert third is not second
    third.started.set()  # the database is back: it serves, the back-off starts over
    supervisor._replace_dead(None)  # type: ignore[arg-type]
    assert supervisor._backoff == {}
    assert supervisor.workers[0] is healthy and not supervisor.failed


def test_a_first_worker_that_cannot_start_stops_them_all(supervisor: Supervisor) -> None:
    starting = FakeWorker(None, None)
    supervisor.workers[1] = starting
    starting.process.exitcode = 1
    supervisor._replace_dead(None)  # type: ignore[arg-type]
    assert supervisor.failed and supervisor._stop.is_set()
