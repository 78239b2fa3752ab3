"""The media store: files that adapters produce, kept on disk and served by id.

Why ids are the whole security model: ``GET /v1/media/{id}`` needs no API key, so that
a browser or an ``<img>`` tag can load a generated image, the way OpenAI's signed image
URLs work. An id is 32 characters of ``secrets.token_urlsafe`` (192 random bits), so a
URL cannot be guessed. Before an id touches the filesystem it must match that exact
alphabet and length; the name on disk is ``<id>.<ext>`` with ``ext`` from a fixed table,
and only regular files (not links) are served. So no request can name a path outside
the directory, nor a file that the store did not write itself.

Ownership: a file made for a team is recorded in ``<id>.owner`` beside it (a name that
is never served). The id stays the capability a browser uses, but a caller that
presents another team's key gets 404 for it.

Retention: a file older than ``retention_s`` is never served, and a periodic sweep
(started by the app lifespan) deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path

from proxy.errors import PayloadTooLarge

log = logging.getLogger("switchyard.media")

OWNER_SUFFIX = ".owner"

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


def new_id() -> str:
    return secrets.token_urlsafe(24)


def valid_id(media_id: str) -> bool:
    return _ID.fullmatch(media_id) is not None


@dataclass(frozen=True, slots=True)
class StoredMedia:
    id: str
    path: Path
    content_type: str
    size: int
    created: float
    """Unix time the file was written."""


class MediaStore:
    def __init__(self, root: Path, *, retention_s: float) -> None:
        self.root = root
        self.retention_s = retention_s

    def ensure_dir(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def expires_at(self, created: float) -> float:
        return created + self.retention_s

    def _target(self, media_id: str, content_type: str) -> Path:
        ext = EXTENSIONS.get(content_type.split(";")[0].strip().lower(), "bin")
        return self.root / f"{media_id}.{ext}"

    def _record(self, media_id: str, path: Path, size: int) -> StoredMedia:
        ctype = CONTENT_TYPES[path.suffix[1:]]
        return StoredMedia(media_id, path, ctype, size, time.time())

    async def save(
        self, data: bytes, content_type: str, *, owner: str | None = None
    ) -> StoredMedia:
        """Write ``data`` atomically (temporary name, then rename) off the event loop."""
        media_id = new_id()
        target = self._target(media_id, content_type)
        await asyncio.to_thread(self._write, target, data, owner)
        return self._record(media_id, target, len(data))

    def _write(self, target: Path, data: bytes, owner: str | None = None) -> None:
        self.ensure_dir()
        if owner is not None:
            self._write_owner(target, owner)
        temp = target.with_name(f".{target.name}.part")
        temp.write_bytes(data)
        os.replace(temp, target)

    def _write_owner(self, target: Path, owner: str) -> None:
        """Written before the file itself, so no file is ever served without its owner."""
        target.with_suffix(OWNER_SUFFIX).write_text(owner, encoding="utf-8")

    def owner(self, media_id: str) -> str | None:
        """The team a file was made for; ``None`` for one made without (or before) owners."""
        if not valid_id(media_id):
            return None
        try:
            return (self.root / f"{media_id}{OWNER_SUFFIX}").read_text(encoding="utf-8")
        except OSError:
            return None

    async def save_stream(
        self,
        chunks: AsyncIterable[bytes],
        content_type: str,
        *,
        max_bytes: int | None = None,
        owner: str | None = None,
    ) -> StoredMedia:
        """Write a stream (a large video) without holding it in memory."""
        media_id = new_id()
        target = self._target(media_id, content_type)
        temp = target.with_name(f".{target.name}.part")
        await asyncio.to_thread(self.ensure_dir)
        if owner is not None:
            await asyncio.to_thread(self._write_owner, target, owner)
        handle = await asyncio.to_thread(temp.open, "wb")
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise PayloadTooLarge(f"The output is larger than {max_bytes} bytes.")
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, temp, target)
        except BaseException:
            handle.close()
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        return self._record(media_id, target, size)

    def find(self, media_id: str) -> StoredMedia | None:
        """The stored file with this id, if the store wrote it and it has not expired."""
        if not valid_id(media_id):
            return None
        now = time.time()
        for ext in CONTENT_TYPES:
            path = self.root / f"{media_id}.{ext}"
            try:
                info = path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode) or now > self.expires_at(info.st_mtime):
                return None
            return StoredMedia(media_id, path, CONTENT_TYPES[ext], info.st_size, info.st_mtime)
        return None

    def delete(self, media_id: str) -> bool:
        found = self.find(media_id)
        if found is None:
            return False
        with contextlib.suppress(FileNotFoundError):
            found.path.unlink()
        with contextlib.suppress(FileNotFoundError):
            found.path.with_suffix(OWNER_SUFFIX).unlink()
        return True

    def sweep(self, now: float | None = None) -> int:
        """Delete expired files (and abandoned partial writes); return how many."""
        now = time.time() if now is None else now
        removed = 0
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return 0
        for entry in entries:
            name = entry.name
            stem, _, ext = name.lstrip(".").partition(".")
            ours = valid_id(stem) and (
                ext in CONTENT_TYPES or ext.endswith(".part") or f".{ext}" == OWNER_SUFFIX
            )
            if not ours:
                continue
            try:
                info = entry.stat(follow_symlinks=False)
                if now > self.expires_at(info.st_mtime):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("media retention removed %d file(s)", removed)
        return removed
