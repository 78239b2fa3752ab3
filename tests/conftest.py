"""Shared fixtures. Test servers live in tests/support/.

PostgreSQL and Redis: ``postgres_url`` / ``redis_url`` (session) are a throwaway server's
base URL, started on first use (tests/support/services.py). Tests take their own space:
``fresh_postgres_url`` is a new database, dropped afterwards; ``fresh_redis_url`` a logical
db flushed before and after, ``redis_key_prefix`` a unique prefix for sharing one db.
S3: ``s3_server`` (session), moto's S3-compatible server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import cycle
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.s3 import S3Server, serve_s3
from tests.support.services import REDIS_DATABASES, TestServices

T = TypeVar("T")


def run_in_own_loop(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a private loop in a worker thread, so sync fixtures can use
    asyncpg/redis.asyncio without touching the loop pytest-asyncio gives the test."""

    async def main() -> T:
        return await make()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, main()).result()


@pytest.fixture(scope="session")
def test_services() -> Iterator[TestServices]:
    services = TestServices()
    try:
        yield services
    finally:
        services.close()


@pytest.fixture(scope="session")
def postgres_url(test_services: TestServices) -> str:
    """``postgresql://postgres@127.0.0.1:PORT``: the session's server, no database named."""
    return test_services.postgres_url()


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + path, parts.query, ""))


@contextmanager
def fresh_database(postgres_url: str) -> Iterator[str]:
    """A new database on the server at ``postgres_url`` for the block, dropped afterwards;
    for fixtures wider than a test (``fresh_postgres_url`` is the per-test one)."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:16]}"
    admin_url = _with_path(postgres_url, "postgres")

    async def execute(sql: str) -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    run_in_own_loop(lambda: execute(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_path(postgres_url, name)
    finally:
        run_in_own_loop(lambda: execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A database of this test's own, ``postgresql://postgres@127.0.0.1:PORT/<db>``."""
    with fresh_database(postgres_url) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(test_services: TestServices) -> str:
    """``redis://127.0.0.1:PORT``: the session's server (db 0)."""
    return test_services.redis_url()


@pytest.fixture(scope="session")
def _redis_dbs() -> Iterator[int]:
    return cycle(range(1, REDIS_DATABASES))


@contextmanager
def fresh_redis_db(redis_url: str, dbs: Iterator[int]) -> Iterator[str]:
    """The next logical db of ``dbs`` (``_redis_dbs``), flushed before and after the block;
    for fixtures wider than a test (``fresh_redis_url`` is the per-test one)."""
    import redis.asyncio as aioredis

    url = _with_path(redis_url, str(next(dbs)))

    async def flush() -> None:
        client = aioredis.Redis.from_url(url)
        try:
            await client.flushdb()
        finally:
            await client.aclose()

    run_in_own_loop(flush)
    try:
        yield url
    finally:
        run_in_own_loop(flush)


@pytest.fixture
def fresh_redis_url(redis_url: str, _redis_dbs: Iterator[int]) -> Iterator[str]:
    """``redis://127.0.0.1:PORT/<db>``: a logical db (never 0) flushed before and after."""
    with fresh_redis_db(redis_url, _redis_dbs) as url:
        yield url


@pytest.fixture
def redis_key_prefix() -> str:
    """A key prefix no other test uses, for tests that share ``redis_url``'s db."""
    return f"test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3-compatible server on a loopback port (tests/support/s3.py); tests make
    their own bucket with ``new_bucket``."""
    with serve_s3() as server:
        yield server
