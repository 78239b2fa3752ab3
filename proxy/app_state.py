"""What the app lifespan builds and handlers read (``app.state.switchyard``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from proxy.drain import Drain
from proxy.gateway import Gateway
from proxy.media import MediaServices
from proxy.metrics import Metrics
from proxy.router import Router
from proxy.schemas.models import Model
from proxy.settings import Settings


@dataclass(slots=True)
class AppState:
    settings: Settings
    metrics: Metrics
    http: httpx.AsyncClient
    router: Router
    gateway: Gateway
    model_cards: list[Model] = field(default_factory=list)
    extensions: dict[str, Any] = field(default_factory=dict)
    media: MediaServices | None = None
    store: Any = None
    """The state store (``proxy.state.StateStore``): teams, keys, usage, audit,
    sessions, media metadata, video jobs."""
    tenancy: Any = None
    """The tenancy layer (``proxy.tenancy.service.Tenancy``)."""
    drain: Drain = field(default_factory=Drain)
    """Shutdown state, shared with the request middleware and the server runner."""

    @property
    def draining(self) -> bool:
        """True from the moment the server was told to stop: not ready any more."""
        return self.drain.draining

    @property
    def source(self) -> str:
        return self.settings.source
