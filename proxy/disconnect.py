"""Noticing that a client went away: while a non-streaming answer is being made, and,
for the access log, whether it already had when a response ends.

Streams notice on their own (``proxy.responses``). A non-streaming handler is only
told when it tries to send, which for a local generation is minutes of wasted work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from proxy.errors import ClientDisconnected

if TYPE_CHECKING:
    from adapters.base import Adapter

Receive = Callable[[], Awaitable[Any]]


def stopped_on_disconnect(
    adapter: Adapter, receive: Receive | None, work: Awaitable[Any]
) -> Awaitable[Any]:
    """``work``, cancelled when the client leaves if ``adapter`` asks for that."""
    if adapter.cancel_on_disconnect and receive is not None:
        return until_disconnected(receive, work)
    return work


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnected(receive: Receive, work: Awaitable[Any]) -> Any:
    """Await ``work``, cancelling it if the client disconnects first (the request body
    has been read, so the next ASGI message can only be the disconnect)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
        watcher.cancel()
    if task.cancelled() or not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientDisconnected("The client disconnected before the answer was ready.")
    return task.result()


def client_gone(receive: Any) -> bool:
    """Whether the server already knows the client disconnected, without waiting.

    ASGI has no way to poll, and uvicorn drops whatever is sent to a closed connection
    without a word: a client that left while a remote answer was awaited would be
    recorded with the answer's status. A server hands out a disconnect it knows of
    without suspending, so ``receive()`` is stepped once: if it would wait, the client
    is still there and the step is closed unfinished.
    """
    step = receive()
    send = getattr(step, "send", None)
    if send is None:  # not a coroutine: nothing can be learnt without awaiting it
        return False
    try:
        send(None)
    except StopIteration as finished:
        message = finished.value
        return isinstance(message, dict) and message.get("type") == "http.disconnect"
    except Exception:  # a server that fails here tells nothing either way
        return False
    step.close()
    return False
