"""Redis pub/sub channel names, scoped to the Redis database in use.

Redis keys live in one numbered database, but pub/sub channels are server-wide: two
deployments on one Redis server with different database numbers (``redis://r:6379/0``
and ``/1``) would otherwise hear each other's key revocations, configuration reloads and
deployment cooldowns. Every channel name therefore ends with the database number of
the client that publishes or subscribes.
"""

from __future__ import annotations

from typing import Any


def scoped_channel(name: str, client: Any) -> str:
    """``name`` for the database ``client`` (a redis-py client, sync or async) uses."""
    database = client.connection_pool.connection_kwargs.get("db", 0)
    return f"{name}:db{database}"
