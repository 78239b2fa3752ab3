"""The media store: ids, what can be served, retention; and media URLs."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.errors import PayloadTooLarge
from proxy.media.store import MediaStore, valid_id
from proxy.media.urls import base_url, media_url
from proxy.settings import ServerConfig


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    return MediaStore(tmp_path / "media", retention_s=60)


async def test_save_and_find(store: MediaStore) -> None:
    saved = await store.save(b"\x89PNG...", "image/png")
    assert valid_id(saved.id) and len(saved.id) == 32
    assert saved.path.name == f"{saved.id}.png" and saved.path.read_bytes() == b"\x89PNG..."
    found = store.find(saved.id)
    assert found is not None and found.content_type == "image/png" and found.size == 7
    other = await store.save(b"x", "image/png")
    assert other.id != saved.id


async def test_unknown_content_type_is_stored_as_binary(store: MediaStore) -> None:
    saved = await store.save(b"x", "text/html")
    assert saved.path.suffix == ".bin"
    assert store.find(saved.id).content_type == "application/octet-stream"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "attempt",
    ["../../etc/passwd", "..", "", "a" * 31, "a" * 33, "a" * 31 + "/", "a" * 30 + "..", "%2e" * 10],
)
async def test_ids_that_are_not_ours_find_nothing(store: MediaStore, attempt: str) -> None:
    await store.save(b"x", "image/png")
    assert store.find(attempt) is None


async def test_only_files_the_store_wrote_are_served(store: MediaStore, tmp_path: Path) -> None:
    store.ensure_dir()
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    (store.root / ("b" * 32)).write_text("no extension: not the store's")
    (store.root / ("c" * 32 + ".txt")).write_text("unknown extension")
    os.symlink(secret, store.root / ("d" * 32 + ".png"))
    assert store.find("b" * 32) is None
    assert store.find("c" * 32) is None
    assert store.find("d" * 32) is None  # a link, even with a valid name


async def test_retention_hides_then_sweeps_old_files(store: MediaStore) -> None:
    old = await store.save(b"old", "image/png")
    fresh = await store.save(b"fresh", "video/mp4")
    stamp = time.time() - 120
    os.utime(old.path, (stamp, stamp))
    partial = store.root / f".{'e' * 32}.png.part"
    partial.write_bytes(b"abandoned")
    os.utime(partial, (stamp, stamp))
    foreign = store.root / "README"
    foreign.write_text("not ours")
    os.utime(foreign, (stamp, stamp))
    assert store.find(old.id) is None  # expired: never served, even before the sweep
    assert store.sweep() == 2
    assert not old.path.exists() and not partial.exists()
    assert fresh.path.exists() and foreign.exists()
    assert store.find(fresh.id) is not None


async def test_stream_save_and_its_size_limit(store: MediaStore) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 1000

    saved = await store.save_stream(chunks(), "video/mp4")
    assert saved.size == 4000 and saved.path.read_bytes() == b"x" * 4000
    with pytest.raises(PayloadTooLarge):
        await store.save_stream(chunks(), "video/mp4", max_bytes=2500)
    assert sorted(p.name for p in store.root.iterdir()) == [saved.path.name]


def _scope(headers: dict[str, str], scheme: str = "http") -> dict[str, object]:
    return {
        "scheme": scheme,
        "server": ("10.0.0.5", 8080),
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }


FORWARDED = {
    "host": "10.0.0.5:8080",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "ai.example.com, proxy.internal",
    "x-forwarded-prefix": "/switchyard",
}


def test_urls_use_the_request_host_by_default() -> None:
    assert base_url(_scope({"host": "gpu-box:8080"}), ServerConfig()) == "http://gpu-box:8080"
    assert media_url("http://h", "abc") == "http://h/v1/media/abc"


def test_forwarded_headers_only_when_trusted() -> None:
    assert base_url(_scope(FORWARDED), ServerConfig()) == "http://10.0.0.5:8080"
    trusted = ServerConfig(trust_forwarded_headers=True)
    assert base_url(_scope(FORWARDED), trusted) == "https://ai.example.com/switchyard"


def test_public_base_url_wins() -> None:
    config = ServerConfig(public_base_url="https://cdn.example.com/", trust_forwarded_headers=True)
    assert base_url(_scope(FORWARDED), config) == "https://cdn.example.com"


@pytest.mark.parametrize(
    "headers",
    [
        {"host": "evil.com/<script>"},
        {"host": "a b"},
        {"host": "ok", "x-forwarded-host": "evil.com\r\nSet-Cookie: x"},
        {"host": "ok", "x-forwarded-host": "evil.com/path"},
    ],
)
def test_malformed_hosts_never_reach_a_url(headers: dict[str, str]) -> None:
    url = base_url(_scope(headers), ServerConfig(trust_forwarded_headers=True))
    assert url in ("http://10.0.0.5:8080", "http://ok")


def test_malformed_forwarded_proto_and_prefix_are_ignored() -> None:
    headers = {"host": "h", "x-forwarded-proto": "javascript", "x-forwarded-prefix": "/a/../b"}
    assert base_url(_scope(headers), ServerConfig(trust_forwarded_headers=True)) == "http://h"
