"""Routing generations: what the config file's models and plugin sections build, swapped
whole on reload.

A generation holds the adapters, the router, the extensions, the gateway, the model list
and the prices built from one reading of the config. The app has one current generation
(``Generations.current``). Every request is pinned to the generation that was current
when it arrived (``enter``/``leave``, called by the request middleware) and reads it
through ``AppState`` (``router``, ``gateway``, ``model_cards``, ...) for its whole life,
so a reload in the middle of a request changes nothing for it.

A reload (``proxy.reload``) builds the next generation and ``swap``s it in; new requests
see it at once. The previous one retires: once its last pinned request has ended and its
deployments have nothing in flight (a video job keeps its deployment busy), what no live
generation uses any more is closed (adapters, extensions, the router's probes).
Unchanged adapters and extensions are carried into the next generation rather than built
again (a local model is not loaded twice), so every such object counts the live
generations that use it and is closed when the last of them retires.

The pin is a context variable, not a scope entry: handlers (the core's and plugins')
reach the state through ``request.app.state.switchyard``, and the variable makes those
reads resolve to the request's generation without each handler knowing about reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from adapters.base import Adapter, Price
from proxy.gateway import Gateway
from proxy.router import Router
from proxy.schemas.models import Model
from proxy.settings import Settings

log = logging.getLogger("switchyard.reload")

_IN_FLIGHT_POLL_S = 0.05

_pinned: ContextVar[Generation | None] = ContextVar("switchyard_generation", default=None)


@dataclass(eq=False, slots=True)
class Generation:
    number: int
    settings: Settings
    router: Router
    gateway: Gateway
    model_cards: list[Model]
    extensions: dict[str, Any]
    prices: dict[str, Price]
    count_tokens: Callable[[str, str], Awaitable[int]]
    adapters: list[Adapter] = field(default_factory=list)
    owner: Any = None
    """The ``Generations`` it belongs to (several apps may run in one process)."""
    requests: int = 0
    """Requests pinned to it and still running."""
    retired: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once it is retired and its last pinned request has ended."""

    def parts(self) -> list[Any]:
        """What it may have to close: its adapters and extensions."""
        return [*self.adapters, *self.extensions.values()]

    def deployments(self) -> list[Any]:
        return [d for found in self.router.deployments.values() for d in found]


async def _close(label: str, close: Callable[[], Awaitable[None]]) -> None:
    try:
        await close()
    except Exception:
        log.exception("closing %s failed", label)


class Generations:
    def __init__(self, first: Generation) -> None:
        first.owner = self
        self.current = first
        self._users: dict[int, int] = {id(part): 1 for part in first.parts()}
        self._retiring: set[asyncio.Task[None]] = set()
        self._live: list[Generation] = [first]

    def pinned(self) -> Generation:
        """The generation of the request being served here, else the current one."""
        generation = _pinned.get()
        if generation is not None and generation.owner is self:
            return generation
        return self.current

    def enter(self) -> tuple[Generation, Token[Generation | None]]:
        """Pin the calling request to the current generation, until ``leave``."""
        generation = self.current
        generation.requests += 1
        return generation, _pinned.set(generation)

    def leave(self, generation: Generation, token: Token[Generation | None]) -> None:
        _pinned.reset(token)
        generation.requests -= 1
        if generation.retired and not generation.requests:
            generation.idle.set()

    def swap(self, new: Generation) -> Generation:
        """Make ``new`` current; the previous generation retires in the background."""
        new.owner = self
        for part in new.parts():
            self._users[id(part)] = self._users.get(id(part), 0) + 1
        old, self.current = self.current, new
        self._live.append(new)
        old.retired = True
        if not old.requests:
            old.idle.set()
        task = asyncio.get_running_loop().create_task(self._retire(old), name="retire-routing")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return old

    async def _retire(self, old: Generation) -> None:
        await old.idle.wait()
        # Work that outlives its request (a video job) holds a deployment, not a pin;
        # the router's in-flight counts are plain integers, so they are polled.
        while self._busy(old):  # noqa: ASYNC110
            await asyncio.sleep(_IN_FLIGHT_POLL_S)
        await self._release(old)
        log.info("configuration generation %d retired", old.number)

    def _busy(self, old: Generation) -> bool:
        """Whether work is in flight on a deployment, or in an extension (an index job),
        that releasing ``old`` closes."""
        if any(d.in_flight for d in old.deployments() if self._only_user(old, d.adapter)):
            return True
        return any(e.busy() for e in old.extensions.values() if self._only_user(old, e))

    def _only_user(self, generation: Generation, part: Any) -> bool:
        """Whether ``part`` is closed when ``generation`` is released (no other user)."""
        return self._users.get(id(part), 0) <= 1

    async def _release(self, generation: Generation) -> None:
        """Close what only ``generation`` still used (in reverse order of building).
        Safe to run twice (a release cut short by shutdown is run again by ``aclose``)."""
        await generation.router.aclose()
        for part in reversed(generation.parts()):
            users = self._users.get(id(part))
            if users is None:
                continue
            if users > 1:
                self._users[id(part)] = users - 1
                continue
            del self._users[id(part)]
            await _close(getattr(part, "label", None) or type(part).__name__, part.aclose)
        if generation in self._live:
            self._live.remove(generation)

    async def retired(self) -> None:
        """Wait until every retiring generation has been released."""
        while self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    async def aclose(self) -> None:
        """Close every generation (the server is stopping: requests have drained)."""
        for task in list(self._retiring):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for generation in reversed(list(self._live)):
            await self._release(generation)
