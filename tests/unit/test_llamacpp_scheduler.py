"""The per-model FIFO queue and the worker-thread hand-off of the llamacpp adapter."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from adapters.llamacpp.scheduler import Channel, RequestQueue, call_job, stream_job
from proxy.errors import RateLimited, SwitchyardError


async def test_requests_take_turns_in_arrival_order() -> None:
    queue = RequestQueue(limit=5)
    order: list[int] = []
    release = asyncio.Event()

    async def request(i: int) -> None:
        async with queue.turn("m"):
            order.append(i)
            if i == 0:
                await release.wait()

    tasks = [asyncio.create_task(request(0))]
    await asyncio.sleep(0)
    for i in range(1, 5):
        tasks.append(asyncio.create_task(request(i)))
        await asyncio.sleep(0)
    assert queue.waiting == 4 and queue.running
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert queue.waiting == 0 and not queue.running


async def test_a_full_queue_is_a_429_with_retry_after() -> None:
    queue = RequestQueue(limit=1)
    hold = asyncio.Event()

    async def request() -> None:
        async with queue.turn("m"):
            await hold.wait()

    running = asyncio.create_task(request())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(request())
    await asyncio.sleep(0)
    with pytest.raises(RateLimited) as caught:
        async with queue.turn("m"):
            pass
    assert int(caught.value.headers["Retry-After"]) >= 1
    assert caught.value.retry_after_s is None  # a hint for the client, not a router cooldown
    waiting.cancel()
    hold.set()
    await running
    assert queue.waiting == 0


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    queue = RequestQueue(limit=2)
    hold = asyncio.Event()

    async def request() -> None:
        async with queue.turn("m"):
            await hold.wait()

    first = asyncio.create_task(request())
    await asyncio.sleep(0)
    second = asyncio.create_task(request())
    await asyncio.sleep(0)
    second.cancel()
    await asyncio.sleep(0)
    assert queue.waiting == 0
    hold.set()
    await first


async def test_stream_job_hands_items_over_and_closing_cancels_the_worker() -> None:
    executor = ThreadPoolExecutor(1)
    stopped = threading.Event()

    def work(channel: Channel) -> None:
        for i in range(10_000):
            if channel.cancelled.is_set():
                stopped.set()
                return
            channel.put(i)
            time.sleep(0.001)

    received = []
    items = stream_job(executor, work)
    async for item in items:
        received.append(item)
        if len(received) == 3:
            break
    await items.aclose()
    assert received == [0, 1, 2]
    assert await asyncio.to_thread(stopped.wait, 5)
    executor.shutdown()


async def test_worker_failures_surface_as_typed_errors() -> None:
    executor = ThreadPoolExecutor(1)

    def broken(_: Any) -> None:
        raise RuntimeError("decode failed")

    with pytest.raises(SwitchyardError, match="decode failed"):
        async for _ in stream_job(executor, broken):
            pass
    with pytest.raises(SwitchyardError, match="decode failed"):
        await call_job(executor, broken)
    executor.shutdown()


async def test_cancelling_a_call_sets_the_flag() -> None:
    executor = ThreadPoolExecutor(1)
    seen = threading.Event()

    def slow(cancelled: threading.Event) -> None:
        while not cancelled.is_set():
            time.sleep(0.001)
        seen.set()

    task = asyncio.create_task(call_job(executor, slow))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(seen.wait, 5)
    executor.shutdown()
