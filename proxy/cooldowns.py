"""Deployment cooldowns shared by replicas through Redis (when ``state.redis_url`` is set).

A cooldown set on one replica (an upstream 429 or 5xx, binding when it came with
``Retry-After``) is written as a Redis key per deployment, ``<prefix><label>``, with
the cooldown as its PX expiry and ``1``/``0`` (binding or not) as its value, and
announced on ``CHANNEL``. Every replica follows the channel and copies the cooldown
onto its own ``Deployment``, so the router's hot path reads only local memory: no Redis
round trip per request. A replica reads the keys of its deployments when it starts and
whenever it re-subscribes, so a cooldown announced while it was not listening still
reaches it (with its remaining time, from PTTL: no clock is compared across hosts).

Deployments are matched by label (adapter, host, upstream model): replicas run the same
configuration. A deployment that answers again clears its cooldown everywhere.

Redis is a help, never a dependency: writes are fire-and-forget tasks, and a failure
leaves the cooldown local to the replica that saw it (logged, never a request error).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Iterable
from contextlib import AsyncExitStack
from typing import Any

import msgspec

from proxy.router import Deployment, Router
from proxy.state.channels import follow_channel, scoped_channel

log = logging.getLogger("switchyard.cooldowns")

CHANNEL = "switchyard:cooldowns"
PREFIX = "switchyard:cooldown:"
_CONNECT_S = 2.0


class _Event(msgspec.Struct, frozen=True):
    deployment: str
    seconds: float
    """Remaining cooldown; 0 clears it."""
    binding: bool
    origin: str


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_Event).decode


class SharedCooldowns:
    def __init__(
        self,
        deployments: Iterable[Deployment],
        *,
        redis: Any,
        subscriber: Any,
        prefix: str = PREFIX,
        channel: str | None = None,
        longest_s: float = 3600.0,
    ) -> None:
        self._by_label: dict[str, list[Deployment]] = {}
        self.follow(deployments)
        self._longest_s = longest_s
        """No cooldown that arrives is longer: a message on the channel (or a key) with
        an absurd time must not take a deployment out of every replica for good."""
        self._redis = redis
        self._subscriber = subscriber
        self._prefix = prefix
        self._channel = channel or scoped_channel(CHANNEL, subscriber)
        self._origin = secrets.token_hex(8)
        self._listener: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()

    def follow(self, deployments: Iterable[Deployment]) -> None:
        """Apply the others' cooldowns to ``deployments`` from now on (those of the routing
        generation a configuration reload made current)."""
        by_label: dict[str, list[Deployment]] = {}
        for deployment in deployments:
            by_label.setdefault(deployment.label, []).append(deployment)
        self._by_label = by_label

    # -- this replica's cooldowns, out ------------------------------------------------

    def cooled(self, deployment: Deployment, seconds: float) -> None:
        """``deployment`` was cooled down here for ``seconds``: tell the others."""
        self._write(_Event(deployment.label, seconds, deployment.binding, self._origin))

    def recovered(self, deployment: Deployment) -> None:
        """``deployment`` answered here: its cooldown is over everywhere."""
        self._write(_Event(deployment.label, 0.0, False, self._origin))

    def _write(self, event: _Event) -> None:
        task = asyncio.get_running_loop().create_task(self._send(event))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _send(self, event: _Event) -> None:
        key = self._prefix + event.deployment
        try:
            if event.seconds > 0:
                millis = max(1, round(event.seconds * 1000))
                await self._redis.set(key, b"1" if event.binding else b"0", px=millis)
            else:
                await self._redis.delete(key)
            await self._redis.publish(self._channel, _encode(event))
        except Exception as exc:
            log.warning(
                "sharing the cooldown of %s failed (%s); it stays local to this replica",
                event.deployment,
                type(exc).__name__,
            )

    # -- the other replicas' cooldowns, in ---------------------------------------------

    def _apply(self, label: str, seconds: float, binding: bool) -> None:
        found = self._by_label.get(label)
        if not found:
            return
        if seconds <= 0:
            for deployment in found:
                deployment.cooldown_until, deployment.binding = 0.0, False
            return
        until = time.monotonic() + min(seconds, self._longest_s)
        for deployment in found:
            if until > deployment.cooldown_until:
                deployment.cooldown_until, deployment.binding = until, binding

    async def catch_up(self) -> None:
        """``sync``, for deployments a reload just made: cooldowns other replicas set
        before they existed apply to them too. Redis down: logged, they start warm."""
        try:
            await self.sync()
        except Exception as exc:
            log.warning(
                "reading shared cooldowns failed (%s); new deployments start without",
                type(exc).__name__,
            )

    async def sync(self) -> None:
        """Copy the cooldowns stored in Redis onto this replica's deployments."""
        labels = list(self._by_label)
        if not labels:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for label in labels:
                pipe.pttl(self._prefix + label)
                pipe.get(self._prefix + label)
            answers = await pipe.execute()
        for index, label in enumerate(labels):
            millis, value = answers[2 * index], answers[2 * index + 1]
            if value is not None and millis > 0:
                self._apply(label, millis / 1000, value == b"1")

    async def start(self) -> None:
        """Subscribe, then read what is already stored (in that order: nothing set in
        between is missed)."""
        pubsub = self._subscriber.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._channel)
        await self.sync()
        self._listener = asyncio.get_running_loop().create_task(
            self._follow(pubsub), name="cooldown-events"
        )

    async def _follow(self, pubsub: Any) -> None:
        async def received(data: Any) -> None:
            self._received(data)

        await follow_channel(
            pubsub, self._channel, received, what="cooldown", on_resubscribed=self.sync
        )

    def _received(self, data: Any) -> None:
        try:
            event = _decode(data)
        except (msgspec.MsgspecError, TypeError):
            log.warning("ignored a malformed cooldown event")
            return
        if event.origin != self._origin:
            self._apply(event.deployment, event.seconds, event.binding)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        for task in list(self._writes):
            with contextlib.suppress(Exception):
                await task


async def share_cooldowns(
    router: Router, redis_url: str, publisher: Any, stack: AsyncExitStack
) -> SharedCooldowns:
    """Make ``router``'s cooldowns shared through Redis (``publisher``: the app's client
    for commands; the subscription gets a connection of its own, with no read timeout)."""
    import redis.asyncio as redis_asyncio

    subscriber = redis_asyncio.Redis.from_url(redis_url, socket_connect_timeout=_CONNECT_S)
    stack.push_async_callback(subscriber.aclose)
    every = [d for found in router.deployments.values() for d in found]
    longest = max(router.cooldown_s, router.max_retry_after_s)
    shared = SharedCooldowns(every, redis=publisher, subscriber=subscriber, longest_s=longest)
    await shared.start()
    stack.push_async_callback(shared.aclose)
    router.shared = shared
    return shared
