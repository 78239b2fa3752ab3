"""What the app lifespan builds and handlers read (``app.state.switchyard``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from proxy.drain import Drain
from proxy.gateway import Gateway
from proxy.generation import Generations
from proxy.media import MediaServices
from proxy.metrics import Metrics
from proxy.router import Router
from proxy.schemas.models import Model
from proxy.settings import Settings


@dataclass(slots=True)
class AppState:
    """The app's state. ``settings``, ``router``, ``gateway``, ``model_cards`` and
    ``extensions`` belong to the routing generation of the request being served (see
    ``proxy.generation``): a configuration reload changes them for new requests only."""

    metrics: Metrics
    http: httpx.AsyncClient
    generations: Generations
    started_settings: Settings
    """The configuration the server started with (what a reload cannot change)."""
    base: Any = None
    """What every generation borrows (``proxy.lifespan.Base``), for reloads."""
    media: MediaServices | None = None
    store: Any = None
    """The state store (``proxy.state.StateStore``): teams, keys, usage, audit,
    sessions, media metadata, video jobs."""
    tenancy: Any = None
    """The tenancy layer (``proxy.tenancy.service.Tenancy``)."""
    drain: Drain = field(default_factory=Drain)
    """Shutdown state, shared with the request middleware and the server runner."""
    reloader: Any = None
    """Re-reads the config file (``proxy.reload.Reloader``), set by the lifespan."""

    @property
    def settings(self) -> Settings:
        return self.generations.pinned().settings

    @property
    def router(self) -> Router:
        return self.generations.pinned().router

    @property
    def gateway(self) -> Gateway:
        return self.generations.pinned().gateway

    @property
    def model_cards(self) -> list[Model]:
        return self.generations.pinned().model_cards

    @property
    def extensions(self) -> dict[str, Any]:
        return self.generations.pinned().extensions

    @property
    def draining(self) -> bool:
        """True from the moment the server was told to stop: not ready any more."""
        return self.drain.draining

    @property
    def source(self) -> str:
        return self.settings.source
