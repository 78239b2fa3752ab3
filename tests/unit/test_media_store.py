"""The media store over the ``dir`` backend and a SQLite state store: ids, ownership,
what can be served, retention, the import of the old directory; and media URLs."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.errors import PayloadTooLarge
from proxy.media.backends.dir import DirBackend
from proxy.media.legacy import import_legacy_media
from proxy.media.store import MediaStore, valid_id
from proxy.media.urls import base_url, media_url
from proxy.settings import ServerConfig
from proxy.state import DEFAULT_TEAM_ID, StateStore, open_state
from proxy.state.config import StateConfig


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[StateStore]:
    store = await open_state(StateConfig(), data_dir=str(tmp_path / "state"))
    try:
        yield store
    finally:
        await store.aclose()


def _store(state: StateStore, root: Path, retention_s: float = 60) -> MediaStore:
    return MediaStore(DirBackend(root), state.media, retention_s=retention_s)


@pytest.fixture
def store(state: StateStore, tmp_path: Path) -> MediaStore:
    return _store(state, tmp_path / "media")


def _root(store: MediaStore) -> Path:
    return store.backend.root  # type: ignore[attr-defined,no-any-return]


async def test_save_and_find(store: MediaStore) -> None:
    saved = await store.save(b"\x89PNG...", "image/png", owner="north")
    assert valid_id(saved.id) and len(saved.id) == 32
    assert saved.storage_key == f"{saved.id}.png"
    assert (_root(store) / saved.storage_key).read_bytes() == b"\x89PNG..."
    found = await store.find("north", saved.id)
    assert found == saved and found.content_type == "image/png" and found.size == 7
    assert found.expires == pytest.approx(found.created + 60)
    assert await store.read(found) == b"\x89PNG..."
    other = await store.save(b"x", "image/png", owner="north")
    assert other.id != saved.id


async def test_another_team_finds_nothing_but_the_capability_does(store: MediaStore) -> None:
    saved = await store.save(b"x", "image/png", owner="north")
    assert await store.find("south", saved.id) is None
    assert not await store.delete("south", saved.id)
    assert await store.find_by_capability(saved.id) == saved
    assert await store.delete("north", saved.id)
    assert await store.find_by_capability(saved.id) is None
    assert list(_root(store).iterdir()) == []


async def test_unknown_content_type_is_stored_as_binary(store: MediaStore) -> None:
    saved = await store.save(b"x", "text/html", owner="north")
    assert saved.storage_key.endswith(".bin")
    assert saved.content_type == "application/octet-stream"


@pytest.mark.parametrize(
    "attempt",
    ["../../etc/passwd", "..", "", "a" * 31, "a" * 33, "a" * 31 + "/", "a" * 30 + "..", "%2e" * 10],
)
async def test_ids_that_are_not_ours_find_nothing(store: MediaStore, attempt: str) -> None:
    await store.save(b"x", "image/png", owner="north")
    assert await store.find("north", attempt) is None
    assert await store.find_by_capability(attempt) is None


async def test_only_files_the_store_recorded_are_served(store: MediaStore) -> None:
    """A file placed in the directory under a valid name has no row: never found."""
    _root(store).mkdir(parents=True)
    (_root(store) / ("b" * 32 + ".png")).write_bytes(b"placed by someone")
    assert await store.find("north", "b" * 32) is None
    assert await store.find_by_capability("b" * 32) is None


async def test_retention_hides_then_sweeps_old_files(state: StateStore, tmp_path: Path) -> None:
    store = _store(state, tmp_path / "media", retention_s=0.2)
    old = await store.save(b"old", "image/png", owner="north")
    await asyncio.sleep(0.3)
    fresh = await store.save(b"fresh", "video/mp4", owner="north")
    root = _root(store)
    stamp = time.time() - 7200
    partial = root / f".{'e' * 32}.png.part"
    partial.write_bytes(b"abandoned")
    os.utime(partial, (stamp, stamp))
    foreign = root / "README"
    foreign.write_text("not ours")
    os.utime(foreign, (stamp, stamp))
    assert await store.find("north", old.id) is None  # expired: never served before the sweep
    assert (root / old.storage_key).exists()
    assert await store.sweep() == 1
    assert not (root / old.storage_key).exists() and not partial.exists()
    assert (root / fresh.storage_key).exists() and foreign.exists()
    assert await store.find("north", fresh.id) == fresh
    assert await store.sweep() == 0


async def test_stream_save_and_its_size_limit(store: MediaStore) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 1000

    saved = await store.save_stream(chunks(), "video/mp4", owner="north")
    assert saved.size == 4000 and await store.read(saved) == b"x" * 4000
    assert (await store.find("north", saved.id)).size == 4000  # type: ignore[union-attr]
    with pytest.raises(PayloadTooLarge):
        await store.save_stream(chunks(), "video/mp4", max_bytes=2500, owner="north")
    assert sorted(p.name for p in _root(store).iterdir()) == [saved.storage_key]
    assert [r.id for r in await store.rows.expired(time.time() + 1e6, 10)] == [saved.id]


async def test_legacy_files_are_imported_once_with_their_owners(
    state: StateStore, tmp_path: Path
) -> None:
    old = tmp_path / "data" / "media"
    old.mkdir(parents=True)
    owned, ownerless, stale = "o" * 32, "n" * 32, "s" * 32
    (old / f"{owned}.png").write_bytes(b"north's")
    (old / f"{owned}.owner").write_text("north")
    (old / f"{ownerless}.mp4").write_bytes(b"before teams")
    (old / f"{stale}.png").write_bytes(b"expired")
    (old / f"{stale}.owner").write_text("north")
    stamp = time.time() - 120
    os.utime(old / f"{stale}.png", (stamp, stamp))
    (old / "notes.txt").write_text("not ours")
    for target in (old, tmp_path / "s3-like"):  # the same directory, or another backend
        store = _store(state, target)
        imported = await import_legacy_media(store, old)
        if target != old:
            assert imported == 0  # once per old directory, whatever the backend
            continue
        assert imported == 3
        north = await store.find("north", owned)
        assert north is not None and await store.read(north) == b"north's"
        assert await store.find("south", owned) is None
        before_teams = await store.find(DEFAULT_TEAM_ID, ownerless)
        assert before_teams is not None and before_teams.content_type == "video/mp4"
        assert await store.find("north", stale) is None
        assert await store.sweep() == 1
        assert not (old / f"{stale}.png").exists() and (old / f"{owned}.png").exists()
        assert (old / "notes.txt").exists()


async def test_legacy_files_are_copied_into_another_backend(
    state: StateStore, tmp_path: Path
) -> None:
    old = tmp_path / "data" / "media"
    old.mkdir(parents=True)
    (old / f"{'o' * 32}.png").write_bytes(b"north's")
    (old / f"{'o' * 32}.owner").write_text("north")
    store = _store(state, tmp_path / "shared")
    assert await import_legacy_media(store, old) == 1
    found = await store.find("north", "o" * 32)
    assert found is not None and await store.read(found) == b"north's"
    assert (tmp_path / "shared" / f"{'o' * 32}.png").read_bytes() == b"north's"
    assert (old / f"{'o' * 32}.png").exists()  # the old directory is left as it was


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
