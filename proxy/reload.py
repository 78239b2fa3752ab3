"""Live configuration reload: ``SIGHUP`` or ``POST /v1/switchyard/admin/reload``.

The config file is read again and validated exactly as at start-up. An invalid file is
refused (the endpoint answers 400 with the error, SIGHUP logs it) and nothing changes.
A valid one becomes the next routing generation (``proxy.generation``): its models,
fallbacks, prices, adapter settings (timeouts, capabilities, upstreams) and plugin
sections apply to requests that arrive from then on, while requests already running
finish on the generation they started with.

Unchanged model entries keep their adapter (a local model is not loaded again, and the
deployment keeps its health and cooldown). A changed entry gets a new adapter; whether
that one shares what the old one loaded is the adapter's business (the bundled local
adapter keys loaded models by file and load settings, so a price change loads
nothing). An extension is built again unless its ``keep_on_reload`` says otherwise.

What the running server cannot change (the ``server``, ``http``, ``state`` and ``auth``
sections: host, port, keys, the state database, Redis, ...; and ``--workers``) keeps
its running value; the answer lists each such change under ``needs_restart``.

Replicas reload independently (each re-reads its own file). With ``state.redis_url``,
``broadcast`` asks every replica subscribed to ``CHANNEL`` to reload too, as key
changes are broadcast (``proxy.tenancy.keys``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from proxy.errors import InvalidRequest
from proxy.lifespan import build_generation, build_router, fingerprint
from proxy.schemas.admin import AdminRequest
from proxy.schemas.base import WireResponse
from proxy.settings import ConfigError, Settings, load_settings
from proxy.state.channels import follow_channel, scoped_channel

if TYPE_CHECKING:
    from proxy.app_state import AppState

log = logging.getLogger("switchyard.reload")

CHANNEL = "switchyard:config-reload"
RESTART_ONLY = ("server", "http", "state", "auth", "media", "cache", "telemetry")
"""Core sections a running server keeps: they shape what lives as long as the process."""


class ReloadRequest(AdminRequest, kw_only=True):
    broadcast: bool = False
    """Ask every replica subscribed through Redis to reload its own file as well."""


class ModelChanges(WireResponse, kw_only=True):
    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []


class ReloadReport(WireResponse, kw_only=True):
    object: str = "switchyard.config_reload"
    source: str
    generation: int
    """Counts reloads: 1 is the configuration the server started with."""
    models: ModelChanges
    sections_changed: list[str] = []
    """Plugin sections whose settings differ."""
    needs_restart: list[str] = []
    """Settings that changed in the file but keep their running value until a restart."""
    broadcast: bool = False
    """Whether the other replicas were asked to reload (through Redis)."""


def _entries(settings: Settings) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for model in settings.models:
        found.setdefault(model.name, []).append(fingerprint(model))
    return found


def model_changes(old: Settings, new: Settings) -> ModelChanges:
    before, after = _entries(old), _entries(new)
    return ModelChanges(
        added=[n for n in after if n not in before],
        removed=[n for n in before if n not in after],
        changed=[n for n in after if n in before and before[n] != after[n]],
    )


def restart_only_changes(running: Settings, new: Settings) -> list[str]:
    """``section.field`` for each restart-only setting that differs (never the values:
    they may be secrets)."""
    changed = []
    for section in RESTART_ONLY:
        old = msgspec.to_builtins(getattr(running, section))
        fresh = msgspec.to_builtins(getattr(new, section))
        changed += [f"{section}.{k}" for k in sorted({*old, *fresh}) if old.get(k) != fresh.get(k)]
    return changed


def effective(running: Settings, new: Settings) -> Settings:
    """``new`` with the restart-only sections the server is running with."""
    kept = {section: getattr(running, section) for section in RESTART_ONLY}
    return msgspec.structs.replace(new, **kept)


class Reloader:
    def __init__(self, state: AppState) -> None:
        self.state = state
        self._lock = asyncio.Lock()
        self._origin = secrets.token_hex(8)
        self._redis: Any = None
        self._channel = CHANNEL
        """Set to the database-scoped name (``proxy.state.channels``) once subscribed."""
        self._listener: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def path(self) -> Path | None:
        source = self.state.started_settings.source
        return None if source.startswith("<") else Path(source)

    async def reload(self, *, broadcast: bool = False) -> ReloadReport:
        """Re-read the file and swap in its generation; ``ConfigError`` when it cannot."""
        path = self.path
        if path is None:
            raise ConfigError("the server was not started from a config file: nothing to re-read")
        async with self._lock:
            new = await asyncio.to_thread(load_settings, path)
            state = self.state
            current = state.generations.current
            settings = effective(state.started_settings, new)
            router, adapters = await build_router(settings, state.base, current)
            try:
                generation = await build_generation(
                    current.number + 1, settings, state.base, router, adapters, current
                )
            except BaseException:
                await _discard(router, adapters, current)
                raise
            state.generations.swap(generation)
        report = ReloadReport(
            source=str(path),
            generation=generation.number,
            models=model_changes(current.settings, settings),
            sections_changed=sorted(
                name
                for name in {*current.settings.sections, *settings.sections}
                if current.settings.sections.get(name) != settings.sections.get(name)
            ),
            needs_restart=restart_only_changes(state.started_settings, new),
        )
        if broadcast:
            report.broadcast = await self._publish()
        log.info("configuration reloaded", extra={"reload": msgspec.to_builtins(report)})
        return report

    async def reload_logged(self) -> None:
        """Reload, and log the outcome (SIGHUP, a broadcast): nobody is waiting for it."""
        try:
            await self.reload()
        except (ConfigError, ValueError, OSError) as exc:
            log.error("configuration reload refused; the running configuration stays: %s", exc)
        except Exception:
            log.exception("configuration reload failed; the running configuration stays")

    def reload_soon(self) -> None:
        """Start a logged reload on the running loop (from SIGHUP's handler)."""
        task = asyncio.get_running_loop().create_task(self.reload_logged(), name="reload")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload_for_request(self, *, broadcast: bool) -> ReloadReport:
        """The admin endpoint's reload: a refused file is a 400 with its error."""
        if broadcast and self.state.tenancy.redis is None:
            raise InvalidRequest(
                "broadcast needs state.redis_url: there is no channel to the other replicas.",
                param="broadcast",
            )
        try:
            return await self.reload(broadcast=broadcast)
        except (ConfigError, ValueError, OSError) as exc:
            raise InvalidRequest(
                f"The configuration was not reloaded (the running one stays): {exc}"
            ) from None

    # -- the Redis broadcast ---------------------------------------------------------

    async def start(self, stack: AsyncExitStack) -> None:
        """Follow other replicas' reload broadcasts, when Redis is configured."""
        tenancy = self.state.tenancy
        url = self.state.started_settings.state.redis_url
        if tenancy is None or tenancy.redis is None or not url:
            return
        import redis.asyncio as redis_asyncio

        self._redis = tenancy.redis
        subscriber = redis_asyncio.Redis.from_url(url, socket_connect_timeout=2.0)
        stack.push_async_callback(subscriber.aclose)
        pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
        self._channel = scoped_channel(CHANNEL, subscriber)
        await pubsub.subscribe(self._channel)
        self._listener = asyncio.get_running_loop().create_task(
            self._follow(pubsub), name="config-reloads"
        )
        stack.push_async_callback(self.aclose)

    async def _publish(self) -> bool:
        try:
            await self._redis.publish(self._channel, self._origin)
        except Exception:
            log.exception("broadcasting a configuration reload failed")
            return False
        return True

    async def _follow(self, pubsub: Any) -> None:
        async def asked(origin: Any) -> None:
            if origin not in (self._origin, self._origin.encode()):
                await self.reload_logged()

        await follow_channel(pubsub, self._channel, asked, what="config-reload")

    async def aclose(self) -> None:
        tasks = [*self._background, *([self._listener] if self._listener else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._listener = None


async def _discard(router: Any, adapters: list[Any], current: Any) -> None:
    """Close what a reload that failed halfway built (not what it carried over)."""
    await router.aclose()
    carried = {id(a) for a in current.adapters}
    for adapter in adapters:
        if id(adapter) not in carried:
            with contextlib.suppress(Exception):
                await adapter.aclose()
