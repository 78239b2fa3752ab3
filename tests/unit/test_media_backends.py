"""The two media backends through one set of tests: ``dir`` (a directory) and ``s3``
(moto's S3-compatible server, reached over HTTP with SigV4 like any S3)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from proxy.errors import PayloadTooLarge
from proxy.media.backends import MediaBackend, open_backend
from proxy.media.backends.s3 import PART
from proxy.media.config import DirStoreConfig, S3StoreConfig
from tests.support.s3 import S3Server

KEY = "k" * 32 + ".png"


@dataclass
class Subject:
    backend: MediaBackend
    stored: Any
    """Lists what is really stored: file names, or object keys."""
    partial: Any
    """Lists unfinished writes: ``.part`` files, or multipart uploads."""


@pytest.fixture(params=["dir", "s3"])
async def subject(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Subject]:
    if request.param == "dir":
        root = tmp_path / "media"
        backend = _dir(str(root))

        def names() -> list[str]:
            return sorted(p.name for p in root.iterdir()) if root.exists() else []

        def stored() -> list[str]:
            return [n for n in names() if not n.endswith(".part")]

        def partial() -> list[str]:
            return [n for n in names() if n.endswith(".part")]

        yield Subject(backend, stored, partial)
    else:
        s3: S3Server = request.getfixturevalue("s3_server")
        bucket = s3.new_bucket()
        section = msgspec.convert(s3.store_config(bucket, prefix="sy/"), S3StoreConfig)
        backend = open_backend("s3", section, data_dir="unused", base_dir=".")

        def keys() -> list[str]:
            return [k.removeprefix("sy/") for k in s3.keys(bucket)]

        yield Subject(backend, keys, lambda: s3.uploads(bucket))
    await backend.aclose()


def _dir(path: str | None, *, data_dir: str = "unused", base_dir: str = ".") -> Any:
    return open_backend("dir", DirStoreConfig(path=path), data_dir=data_dir, base_dir=base_dir)


async def _read(backend: MediaBackend, key: str) -> bytes | None:
    opened = await backend.open(key)
    if opened is None:
        return None
    data = b"".join([chunk async for chunk in opened.chunks])
    assert len(data) == opened.size
    return data


async def _chunks(total: int, size: int = 1 << 20) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        part = min(size, total - sent)
        yield bytes([sent // size % 251]) * part
        sent += part


async def test_put_open_delete(subject: Subject) -> None:
    backend = subject.backend
    assert await backend.open(KEY) is None
    await backend.put(KEY, b"\x89PNG bytes", "image/png")
    assert await _read(backend, KEY) == b"\x89PNG bytes"
    assert subject.stored() == [KEY]
    await backend.delete(KEY)
    await backend.delete(KEY)  # twice: no error
    assert await backend.open(KEY) is None
    assert subject.stored() == []


async def test_a_stream_larger_than_a_part_arrives_whole(subject: Subject) -> None:
    total = 2 * PART + 12345  # three multipart parts on S3
    size = await subject.backend.put_stream(KEY, _chunks(total), "video/mp4", None)
    assert size == total
    data = await _read(subject.backend, KEY)
    expected = b"".join([c async for c in _chunks(total)])
    assert data == expected
    assert subject.partial() == []


async def test_a_small_stream(subject: Subject) -> None:
    assert await subject.backend.put_stream(KEY, _chunks(10, 3), "video/mp4", 10) == 10
    assert await _read(subject.backend, KEY) == bytes([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])


@pytest.mark.parametrize("total", [3000, PART + 100])
async def test_over_the_limit_leaves_nothing(subject: Subject, total: int) -> None:
    with pytest.raises(PayloadTooLarge):
        await subject.backend.put_stream(KEY, _chunks(total, 1000), "video/mp4", total - 1)
    assert subject.stored() == [] and subject.partial() == []
    assert await subject.backend.open(KEY) is None


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "k" * 32,
        "k" * 31 + ".png",
        "k" * 32 + ".png/x",
        ".." + "k" * 30 + ".png",
    ],
)
async def test_keys_of_another_shape_are_refused(subject: Subject, key: str) -> None:
    with pytest.raises(ValueError):
        await subject.backend.put(key, b"x", "image/png")
    with pytest.raises(ValueError):
        await subject.backend.open(key)
    with pytest.raises(ValueError):
        await subject.backend.delete(key)
    assert subject.stored() == []


async def test_abandoned_partial_writes_are_swept(subject: Subject) -> None:
    backend = subject.backend
    await backend.put(KEY, b"kept", "image/png")
    await _abandon(backend, "p" * 32 + ".mp4")
    assert subject.partial() != []
    if backend.name == "dir":
        # (moto's ListMultipartUploads reports every upload as started in 2010, so the
        # age test is the directory's alone here.)
        assert await backend.sweep_partial(time.time() - 3600) == 0  # not old enough yet
    assert await backend.sweep_partial(time.time() + 60) == 1
    assert subject.partial() == []
    assert await _read(backend, KEY) == b"kept"


async def _abandon(backend: MediaBackend, key: str) -> None:
    """A write a process began and never finished (it died)."""
    root = getattr(backend, "root", None)
    if root is not None:
        (root / f".{key}.part").write_bytes(b"half")
        return
    client = backend.client  # type: ignore[attr-defined]
    client.create_multipart_upload(Bucket=backend.bucket, Key=backend.prefix + key)  # type: ignore[attr-defined]


async def test_dir_never_serves_a_link(tmp_path: Path) -> None:
    root = tmp_path / "media"
    root.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, root / KEY)
    backend = _dir(str(root))
    assert await backend.open(KEY) is None
    os.mkdir(root / ("d" * 32 + ".png"))
    assert await backend.open("d" * 32 + ".png") is None


def test_a_relative_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    backend = _dir("shared/media", data_dir="x", base_dir=str(tmp_path))
    assert backend.root == tmp_path / "shared" / "media"
    default = _dir(None, data_dir=str(tmp_path), base_dir="/nowhere")
    assert default.root == tmp_path / "media"
