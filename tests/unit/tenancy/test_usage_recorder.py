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
