"""The shared PostgreSQL/Redis fixtures: real servers, one database or db per test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.support.services import POSTGRES_ENV, REDIS_ENV, find_postgres_binary


async def test_postgres_url_is_a_reachable_server(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    assert parts.scheme == "postgresql"
    assert parts.username == "postgres"
    assert parts.path in ("", "/")
    connection = await asyncpg.connect(postgres_url + "/postgres")
    try:
        assert await connection.fetchval("SELECT 1 + 1") == 2
    finally:
        await connection.close()


async def test_fresh_databases_are_separate(postgres_url: str, fresh_postgres_url: str) -> None:
    name = urlsplit(fresh_postgres_url).path.lstrip("/")
    assert fresh_postgres_url == f"{postgres_url}/{name}"
    connection = await asyncpg.connect(fresh_postgres_url)
    try:
        assert await connection.fetchval("SELECT current_database()") == name
        await connection.execute("CREATE TABLE marker (v int)")
        await connection.execute("INSERT INTO marker VALUES (7)")
    finally:
        await connection.close()
    # A second fresh database, made the way the fixture makes them, has no such table.
    admin = await asyncpg.connect(postgres_url + "/postgres")
    try:
        other = name + "_other"
        await admin.execute(f'CREATE DATABASE "{other}"')
        try:
            peer = await asyncpg.connect(f"{postgres_url}/{other}")
            try:
                exists = await peer.fetchval("SELECT to_regclass('public.marker') IS NOT NULL")
                assert exists is False
            finally:
                await peer.close()
        finally:
            await admin.execute(f'DROP DATABASE "{other}"')
    finally:
        await admin.close()


_seen_databases: list[str] = []


def test_each_test_gets_a_new_database_first(fresh_postgres_url: str) -> None:
    _seen_databases.append(fresh_postgres_url)


async def test_each_test_gets_a_new_database_and_the_old_one_is_dropped(
    postgres_url: str, fresh_postgres_url: str
) -> None:
    assert len(_seen_databases) == 1
    assert fresh_postgres_url != _seen_databases[0]
    previous = urlsplit(_seen_databases[0]).path.lstrip("/")
    connection = await asyncpg.connect(postgres_url + "/postgres")
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname = $1", previous
        )
    finally:
        await connection.close()
    assert count == 0


async def test_redis_url_is_a_reachable_server(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.ping() is True
    finally:
        await client.aclose()


_redis_seen: list[str] = []


async def test_fresh_redis_db_starts_empty_and_is_flushed_after(fresh_redis_url: str) -> None:
    client = aioredis.Redis.from_url(fresh_redis_url)
    try:
        assert await client.dbsize() == 0
        await client.set("left-behind", "1")
    finally:
        await client.aclose()
    _redis_seen.append(fresh_redis_url)


async def test_fresh_redis_leftovers_are_gone(redis_url: str) -> None:
    # The db the previous test wrote to was flushed when it ended.
    assert len(_redis_seen) == 1
    assert _redis_seen[0].startswith(redis_url + "/")
    assert _redis_seen[0] != redis_url + "/0"
    client = aioredis.Redis.from_url(_redis_seen[0])
    try:
        assert await client.exists("left-behind") == 0
    finally:
        await client.aclose()


_prefixes: list[str] = []


def test_redis_key_prefix_first(redis_key_prefix: str) -> None:
    assert redis_key_prefix.startswith("test:") and redis_key_prefix.endswith(":")
    _prefixes.append(redis_key_prefix)


def test_redis_key_prefix_differs_per_test(redis_key_prefix: str) -> None:
    assert _prefixes and redis_key_prefix != _prefixes[0]


def test_default_path_does_not_use_the_system_servers(postgres_url: str, redis_url: str) -> None:
    if not os.environ.get(POSTGRES_ENV):
        assert urlsplit(postgres_url).port != 5432
    if not os.environ.get(REDIS_ENV):
        assert urlsplit(redis_url).port != 6379


def test_servers_start_without_usr_local_bin_and_stop_cleanly() -> None:
    """The fresh-machine path, in a child interpreter: PATH without /usr/local/bin (Debian
    puts no PostgreSQL binary on PATH), no overrides; under root, the server runs as an
    unprivileged user. After close(), processes and directories are gone."""
    script = textwrap.dedent(
        """
        import os, pwd, subprocess, sys
        import asyncio, asyncpg
        from tests.support.services import TestServices
        services = TestServices()
        pg = services.postgres_url()
        rd = services.redis_url()
        started = services.started()
        proc = started["postgres"].process
        owner = pwd.getpwuid(os.stat(f"/proc/{proc.pid}").st_uid).pw_name
        async def who():
            c = await asyncpg.connect(pg + "/postgres")
            try:
                return await c.fetchval("SHOW data_directory")
            finally:
                await c.close()
        data = asyncio.run(who())
        dirs = [s.directory for s in started.values()]
        pids = [s.process.pid for s in started.values()]
        services.close()
        gone = all(not os.path.exists(d) for d in dirs)
        dead = all(not os.path.exists(f"/proc/{p}") or
                   open(f"/proc/{p}/stat").read().split()[2] == "Z" for p in pids)
        print(owner, data.startswith(tuple(dirs)), gone, dead)
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in (POSTGRES_ENV, REDIS_ENV, "PATH")}
    env["PATH"] = ":".join(
        p for p in os.environ.get("PATH", "").split(":") if p and p != "/usr/local/bin"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=os.getcwd(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    owner, in_temp_dir, removed, stopped = result.stdout.split()
    if os.geteuid() == 0:
        assert owner != "root"
    assert (in_temp_dir, removed, stopped) == ("True", "True", "True")


def test_postgres_binaries_are_found_off_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    initdb = find_postgres_binary("initdb")
    assert initdb is not None and os.access(initdb, os.X_OK)
    assert initdb.startswith("/usr/lib/postgresql/") or os.path.dirname(initdb) in (
        "/usr/bin",
        "/bin",
    )
