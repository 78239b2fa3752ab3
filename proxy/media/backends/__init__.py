"""Where media bytes live: one small interface, backends found by name.

A backend stores opaque objects under keys the media store builds (``<id>.<ext>``, from
an id it generated and checked and an extension from a fixed table); it never chooses
a name itself and refuses any key of another shape (``check_key``), so no request can
make it read or write anything the store did not create. Metadata (owner, type,
expiry) is not the backend's business: it lives in the state store, and every replica
reads it there.

``BACKENDS`` maps a ``media.store`` key (``dir``, ``s3``) to the backend class; a
class's ``from_config`` takes its config section and what it needs to resolve paths.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

KEY = re.compile(r"[A-Za-z0-9_-]{32}\.[a-z0-9]{2,5}")
"""The only keys a backend accepts: the media store's ``<id>.<ext>``."""


def check_key(key: str) -> str:
    if KEY.fullmatch(key) is None:
        raise ValueError("not a media store key")
    return key


@dataclass(slots=True)
class StoredObject:
    """An object opened for reading: its size, and its bytes as they arrive."""

    size: int
    chunks: AsyncIterator[bytes]


class MediaBackend(Protocol):
    name: ClassVar[str]

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``; it appears whole or not at all."""
        ...

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str, max_bytes: int | None
    ) -> int:
        """Store a stream without holding it in memory; its size. Over ``max_bytes``:
        ``PayloadTooLarge``, and nothing is left behind."""
        ...

    async def open(self, key: str) -> StoredObject | None:
        """The object, or ``None`` when there is none under ``key``."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object (no error when there is none)."""
        ...

    async def sweep_partial(self, older_than: float) -> int:
        """Remove writes abandoned before ``older_than`` (a crashed process's); how many."""
        ...

    async def aclose(self) -> None: ...


class BackendFactory(Protocol):
    name: ClassVar[str]

    @classmethod
    def from_config(cls, config: Any, *, data_dir: str, base_dir: str) -> MediaBackend: ...


BACKENDS: dict[str, type[BackendFactory]] = {}


def register(cls: type[Any]) -> type[Any]:
    """Class decorator: make a backend known under its ``name``."""
    BACKENDS[cls.name] = cls
    return cls


def open_backend(name: str, config: Any, *, data_dir: str, base_dir: str) -> MediaBackend:
    """The backend ``media.store`` names, opened (S3's module is imported only here)."""
    if name not in BACKENDS:
        import importlib

        importlib.import_module(f"proxy.media.backends.{name}")
    return BACKENDS[name].from_config(config, data_dir=data_dir, base_dir=base_dir)
