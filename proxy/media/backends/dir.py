"""The ``dir`` backend: one directory, which may be a volume every replica mounts.

A write goes to ``.<key>.part`` and is renamed into place, so a reader on any replica
sees a whole file or none. Only regular files are read, opened without following links:
a link someone placed in the directory is never served.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import IO, ClassVar

from proxy.errors import PayloadTooLarge
from proxy.media.backends import KEY, StoredObject, check_key, register
from proxy.media.config import DirStoreConfig

CHUNK = 256 * 1024
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@register
class DirBackend:
    name: ClassVar[str] = "dir"

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def from_config(cls, config: DirStoreConfig, *, data_dir: str, base_dir: str) -> DirBackend:
        if config.path is None:
            return cls(Path(data_dir) / "media")
        path = Path(config.path).expanduser()
        return cls(path if path.is_absolute() else Path(base_dir) / path)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _partial(self, key: str) -> Path:
        return self.root / f".{check_key(key)}.part"

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        target, temp = self._path(key), self._partial(key)

        def write() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            temp.write_bytes(data)
            os.replace(temp, target)

        await asyncio.to_thread(write)

    async def put_stream(
        self, key: str, chunks: AsyncIterable[bytes], content_type: str, max_bytes: int | None
    ) -> int:
        target, temp = self._path(key), self._partial(key)
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        handle: IO[bytes] = await asyncio.to_thread(temp.open, "wb")
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
        return size

    async def open(self, key: str) -> StoredObject | None:
        path = self._path(key)

        def opened() -> tuple[int, IO[bytes]] | None:
            try:
                fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
            except OSError:
                return None
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                return None
            return info.st_size, os.fdopen(fd, "rb")

        found = await asyncio.to_thread(opened)
        if found is None:
            return None
        size, handle = found
        return StoredObject(size, _read(handle))

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(path.unlink)

    async def sweep_partial(self, older_than: float) -> int:
        return await asyncio.to_thread(self._sweep_partial, older_than)

    def _sweep_partial(self, older_than: float) -> int:
        removed = 0
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return 0
        for entry in entries:
            name = entry.name
            if not (name.startswith(".") and name.endswith(".part")):
                continue
            if KEY.fullmatch(name[1 : -len(".part")]) is None:
                continue
            with contextlib.suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_mtime < older_than:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    async def aclose(self) -> None:
        return None


async def _read(handle: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk
    finally:
        handle.close()
