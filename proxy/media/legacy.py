"""Importing the media directory of earlier versions into the state store, once.

Earlier versions kept ``<id>.<ext>`` files in ``{data_dir}/media`` with the owning
team in an ``<id>.owner`` file beside each (none for files made before teams). At start
each file is copied into the configured backend under the same key (for the default
``dir`` backend that is the same directory: the copy replaces the file with itself, and
costs one read), and its row is written with the file's time as ``created``, the
sidecar's team as owner (the ``default`` team where there was none) and the current
retention. Files already past retention get a row only, so the next sweep removes them.
The directory's resolved path is recorded with the rows in one transaction
(``legacy_imports``), so it happens once, also with several replicas starting together.
Nothing else in the old directory is changed; ``.owner`` files are no longer read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from proxy.media.store import CONTENT_TYPES, MediaStore, valid_id
from proxy.state.records import DEFAULT_TEAM_ID, MediaRecord

log = logging.getLogger("switchyard.media")
OWNER_SUFFIX = ".owner"
_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class _OldFile:
    path: Path
    media_id: str
    ext: str
    owner: str
    mtime: float
    size: int


async def import_legacy_media(store: MediaStore, directory: str | os.PathLike[str]) -> int:
    """Import the old directory's files (see the module docstring); how many rows were
    written (0 when it was imported before, or holds nothing)."""
    root = await asyncio.to_thread(Path(directory).resolve)
    marker = f"media-dir:{root}"
    if await store.rows.imported(marker):
        return 0
    files = await asyncio.to_thread(_scan, root)
    now = time.time()
    rows: list[MediaRecord] = []
    for old in files:
        key = f"{old.media_id}.{old.ext}"
        expires = store.expires_at(old.mtime)
        if expires > now:
            await store.backend.put_stream(key, _chunks(old.path), CONTENT_TYPES[old.ext], None)
        rows.append(
            MediaRecord(
                id=old.media_id,
                owner=old.owner,
                content_type=CONTENT_TYPES[old.ext],
                size=old.size,
                created=old.mtime,
                expires=expires,
                storage_key=key,
            )
        )
    imported = await store.rows.import_once(marker, rows)
    if imported:
        log.info("imported %d media file(s) from %s", imported, root)
    return imported


def _scan(root: Path) -> list[_OldFile]:
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        stem, _, ext = entry.name.partition(".")
        if not valid_id(stem) or ext not in CONTENT_TYPES:
            continue
        info = entry.stat(follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            continue
        owner = DEFAULT_TEAM_ID
        with contextlib.suppress(OSError):
            owner = (root / f"{stem}{OWNER_SUFFIX}").read_text(encoding="utf-8").strip() or owner
        found.append(_OldFile(Path(entry.path), stem, ext, owner, info.st_mtime, info.st_size))
    return found


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, _CHUNK):
            yield chunk
    finally:
        handle.close()
