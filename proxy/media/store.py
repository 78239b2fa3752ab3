"""The media store: files that adapters produce, their metadata in the state store and
their bytes in a backend (``proxy.media.backends``), served by id from any replica.

Why ids are the whole security model: ``GET /v1/media/{id}`` needs no API key, so that
a browser or an ``<img>`` tag can load a generated image, the way OpenAI's signed image
URLs work. An id is 32 characters of ``secrets.token_urlsafe`` (192 random bits), so a
URL cannot be guessed. An id is looked up only after it matches that exact alphabet and
length, and only in the state store: a backend is asked only for the key of a row the
store wrote (``<id>.<ext>``, ``ext`` from a fixed table), so no request can name a file
or object that the store did not create.

Ownership: each row records the team a file was made for. The id stays the capability
a browser uses, but a caller that presents another team's key gets 404 for it.

Order of writes: the row first, then the bytes (a failed write removes the row). A
crash between the two leaves a row without bytes (a 404 until retention removes it),
never bytes that no row points to and no sweep would find.

Retention: a file past its ``expires`` is never served; the sweep (one replica at a
time, see ``proxy.media.services``) deletes its row and bytes.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterable

import msgspec

from proxy.media.backends import MediaBackend, StoredObject
from proxy.state.records import MediaRecord
from proxy.state.repositories import MediaRepository

log = logging.getLogger("switchyard.media")

StoredMedia = MediaRecord
"""What ``save`` returns and adapters hand back (``VideoOutput.media``)."""

#: Content type -> file extension; the only names the store ever writes or opens.
EXTENSIONS: dict[str, str] = {
    "image/png": "png",
    "image/apng": "apng",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
    "audio/mpeg": "mp3",
    "audio/wav": "wav",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "audio/aac": "aac",
    "application/octet-stream": "bin",
}
CONTENT_TYPES: dict[str, str] = {ext: ctype for ctype, ext in EXTENSIONS.items()}

_ID = re.compile(r"[A-Za-z0-9_-]{32}")
SWEEP_BATCH = 500


def new_id() -> str:
    return secrets.token_urlsafe(24)


def valid_id(media_id: str) -> bool:
    return _ID.fullmatch(media_id) is not None


def storage_key(media_id: str, content_type: str) -> tuple[str, str]:
    """The backend key and the stored content type for a new file."""
    if not valid_id(media_id):
        raise ValueError("not a media id")
    ctype = content_type.split(";")[0].strip().lower()
    ext = EXTENSIONS.get(ctype, "bin")
    return f"{media_id}.{ext}", CONTENT_TYPES[ext]


class MediaStore:
    def __init__(self, backend: MediaBackend, rows: MediaRepository, *, retention_s: float) -> None:
        self.backend = backend
        self.rows = rows
        self.retention_s = retention_s

    def expires_at(self, created: float) -> float:
        return created + self.retention_s

    def _new(self, content_type: str, owner: str, size: int) -> MediaRecord:
        media_id = new_id()
        key, ctype = storage_key(media_id, content_type)
        now = time.time()
        return MediaRecord(
            id=media_id,
            owner=owner,
            content_type=ctype,
            size=size,
            created=now,
            expires=self.expires_at(now),
            storage_key=key,
        )

    async def save(self, data: bytes, content_type: str, *, owner: str) -> StoredMedia:
        """Store ``data`` for team ``owner``; it is served whole or not at all."""
        record = self._new(content_type, owner, len(data))
        await self.rows.add(record)
        try:
            await self.backend.put(record.storage_key, data, record.content_type)
        except BaseException:
            await self._undo(record)
            raise
        return record

    async def save_stream(
        self,
        chunks: AsyncIterable[bytes],
        content_type: str,
        *,
        owner: str,
        max_bytes: int | None = None,
    ) -> StoredMedia:
        """Store a stream (a large video) without holding it in memory; over
        ``max_bytes`` it raises ``PayloadTooLarge`` and nothing is kept."""
        record = self._new(content_type, owner, 0)
        await self.rows.add(record)
        try:
            size = await self.backend.put_stream(
                record.storage_key, chunks, record.content_type, max_bytes
            )
            await self.rows.set_size(owner, record.id, size)
        except BaseException:
            await self._undo(record)
            raise
        return msgspec.structs.replace(record, size=size)

    async def _undo(self, record: MediaRecord) -> None:
        with contextlib.suppress(Exception):
            await self.rows.delete(record.owner, record.id)
            await self.backend.delete(record.storage_key)

    async def find(self, owner: str, media_id: str) -> StoredMedia | None:
        """The team's file with this id, unless it expired."""
        if not valid_id(media_id):
            return None
        return await self.rows.get(owner, media_id, time.time())

    async def find_by_capability(self, media_id: str) -> StoredMedia | None:
        """The file whose id a caller without a key presents (see the module's docstring)."""
        if not valid_id(media_id):
            return None
        return await self.rows.by_capability(media_id, time.time())

    async def open(self, media: StoredMedia) -> StoredObject | None:
        """The bytes of a file found by ``find``; ``None`` when they are gone."""
        return await self.backend.open(media.storage_key)

    async def read(self, media: StoredMedia) -> bytes | None:
        opened = await self.open(media)
        if opened is None:
            return None
        return b"".join([chunk async for chunk in opened.chunks])

    async def delete(self, owner: str, media_id: str) -> bool:
        if not valid_id(media_id):
            return False
        record = await self.rows.delete(owner, media_id)
        if record is None:
            return False
        await self.backend.delete(record.storage_key)
        return True

    async def sweep(self, now: float | None = None) -> int:
        """Delete expired files (bytes, then rows) and abandoned partial writes; how
        many files went. A backend that fails keeps the rows, for the next sweep."""
        now = time.time() if now is None else now
        removed = 0
        while batch := await self.rows.expired(now, SWEEP_BATCH):
            for record in batch:
                await self.backend.delete(record.storage_key)
            removed += await self.rows.forget(batch)
            if len(batch) < SWEEP_BATCH:
                break
        # A write still partial after this long (retention, at least an hour) was
        # abandoned by a process that died.
        await self.backend.sweep_partial(now - max(self.retention_s, 3600.0))
        if removed:
            log.info("media retention removed %d file(s)", removed)
        return removed
