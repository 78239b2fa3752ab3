"""Redis pub/sub channel names, scoped to the Redis database in use.

Redis keys live in one numbered database, but pub/sub channels are server-wide: two
deployments on one Redis server with different database numbers (``redis://r:6379/0``
and ``/1``) would otherwise hear each other's key revocations, configuration reloads and
deployment cooldowns. Every channel name therefore ends with the database number of
the client that publishes or subscribes.

``follow_channel`` is the one subscriber loop they all run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("switchyard.channels")


def scoped_channel(name: str, client: Any) -> str:
    """``name`` for the database ``client`` (a redis-py client, sync or async) uses."""
    database = client.connection_pool.connection_kwargs.get("db", 0)
    return f"{name}:db{database}"


async def follow_channel(
    pubsub: Any,
    channel: str,
    on_message: Callable[[Any], Awaitable[None]],
    *,
    what: str,
    on_lost: Callable[[], None] | None = None,
    on_resubscribed: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Hand each message's data on ``channel`` (already subscribed on ``pubsub``) to
    ``on_message`` until cancelled. When the subscription breaks (Redis restarted, the
    connection dropped), log it as ``what``, call ``on_lost``, wait a second, subscribe
    again and call ``on_resubscribed`` (to read what was missed meanwhile). The pubsub
    is closed at the end. One loop for every follower: key changes, cooldowns, reloads."""
    try:
        while True:
            try:
                async for message in pubsub.listen():
                    await on_message(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("lost the %s channel; retrying in 1 s", what, exc_info=True)
                if on_lost is not None:
                    on_lost()
            await asyncio.sleep(1)
            with contextlib.suppress(Exception):
                await pubsub.subscribe(channel)
                if on_resubscribed is not None:
                    await on_resubscribed()
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
