"""Model listing: ``GET /v1/models`` and ``GET /v1/models/{id}``."""

from __future__ import annotations

from typing import Literal

from proxy.schemas.base import WireResponse


class Model(WireResponse):
    id: str
    created: int
    owned_by: str
    object: Literal["model"] = "model"


class ModelList(WireResponse):
    data: list[Model]
    object: Literal["list"] = "list"
