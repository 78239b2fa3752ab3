"""UsageRecorder: batched writes, flush on demand and on close, nothing lost on a failed write."""

from __future__ import annotations

import asyncio
import contextlib

from proxy.state.records import UsageRecord
from proxy.tenancy.usage import UsageRecorder


class Repository:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failures = 0

    async def insert_many(self, rows: list[UsageRecord]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database away")
        self.batches.append([r.request_id for r in rows])


def row(request_id: str) -> UsageRecord:
    return UsageRecord(
        time=1.0,
        request_id=request_id,
        key_id="k",
        team_id="t",
        model="m",
        deployment="d",
        route="chat",
        status=200,
    )


async def test_rows_wait_for_the_interval_and_are_written_as_one_batch() -> None:
    repo = Repository()
    recorder = UsageRecorder(repo, interval_s=0.05, max_rows=100)  # type: ignore[arg-type]
    recorder.start()
    for i in range(5):
        recorder.record(row(f"r{i}"))
    assert repo.batches == []  # recording does no I/O
    for _ in range(100):
        if repo.batches:
            break
        await asyncio.sleep(0.01)
    await recorder.aclose()
    assert repo.batches == [["r0", "r1", "r2", "r3", "r4"]]


async def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    repo = Repository()
    recorder = UsageRecorder(repo, interval_s=3600, max_rows=3)  # type: ignore[arg-type]
    recorder.start()
    for i in range(3):
        recorder.record(row(f"r{i}"))
    for _ in range(100):
        if repo.batches:
            break
        await asyncio.sleep(0.01)
    assert repo.batches == [["r0", "r1", "r2"]]
    await recorder.aclose()


async def test_close_writes_what_is_left() -> None:
    repo = Repository()
    recorder = UsageRecorder(repo, interval_s=3600)  # type: ignore[arg-type]
    recorder.start()
    recorder.record(row("last"))
    await recorder.aclose()
    assert repo.batches == [["last"]]


async def test_a_failed_write_keeps_its_rows_in_order_for_the_next_one() -> None:
    repo = Repository()
    repo.failures = 1
    recorder = UsageRecorder(repo, interval_s=3600)  # type: ignore[arg-type]
    recorder.record(row("a"))
    with contextlib.suppress(ConnectionError):
        await recorder.flush()
    recorder.record(row("b"))
    await recorder.flush()
    assert repo.batches == [["a", "b"]]
    assert recorder.written == 2


async def test_the_backlog_is_bounded_and_drops_the_oldest() -> None:
    repo = Repository()
    repo.failures = 10
    recorder = UsageRecorder(repo, interval_s=3600, max_backlog=3)  # type: ignore[arg-type]
    for name in "abcde":
        recorder.record(row(name))
    with contextlib.suppress(ConnectionError):
        await recorder.flush()
    assert recorder.dropped == 2
    repo.failures = 0
    await recorder.flush()
    assert repo.batches == [["c", "d", "e"]]


class Picky(Repository):
    """Refuses any batch holding a row whose model is 'bad' (as a database refuses a
    value), and can be 'away' (an OSError, as when it cannot be reached)."""

    def __init__(self) -> None:
        super().__init__()
        self.away = False

    async def insert_many(self, rows: list[UsageRecord]) -> None:
        if self.away:
            raise ConnectionRefusedError("database away")
        if any(r.model == "bad" for r in rows):
            raise ValueError("value refused")
        self.batches.append([r.request_id for r in rows])


async def test_one_refused_row_is_dropped_alone_and_the_others_are_written() -> None:
    repo = Picky()
    recorder = UsageRecorder(repo, interval_s=3600)  # type: ignore[arg-type]
    bad = row("b")
    bad.model = "bad"
    for r in (row("a"), bad, row("c")):
        recorder.record(r)
    await recorder.flush()
    assert repo.batches == [["a"], ["c"]]
    assert (recorder.written, recorder.dropped, recorder.pending) == (2, 1, 0)


async def test_an_unavailable_database_keeps_every_row_queued() -> None:
    repo = Picky()
    repo.away = True
    recorder = UsageRecorder(repo, interval_s=3600)  # type: ignore[arg-type]
    recorder.record(row("a"))
    recorder.record(row("b"))
    with contextlib.suppress(ConnectionRefusedError):
        await recorder.flush()
    assert (recorder.pending, recorder.dropped) == (2, 0)
    repo.away = False
    await recorder.flush()
    assert repo.batches == [["a", "b"]]


async def test_a_cancelled_write_puts_its_rows_back() -> None:
    started = asyncio.Event()

    class Slow(Repository):
        async def insert_many(self, rows: list[UsageRecord]) -> None:
            started.set()
            await asyncio.sleep(3600)

    recorder = UsageRecorder(Slow(), interval_s=3600)  # type: ignore[arg-type]
    recorder.record(row("a"))
    task = asyncio.create_task(recorder.flush())
    await started.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert recorder.pending == 1


async def test_long_client_chosen_values_are_cut_to_their_columns() -> None:
    repo = Repository()
    recorder = UsageRecorder(repo, interval_s=3600)  # type: ignore[arg-type]
    long = row("r")
    long.model = "m" * 5000
    long.key_id = "jwt:" + "s" * 500
    recorder.record(long)
    assert (len(long.model), len(long.key_id)) == (200, 64)
