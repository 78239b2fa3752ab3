"""Telling "the state store or Redis is unreachable" apart from any other failure.

Such a request gets a 503 with ``Retry-After`` (``StateUnavailable``), not a 500: the
request was fine, a dependency was not, and a retry soon may succeed. ``/health/ready``
reports the same condition, so a load balancer stops sending traffic meanwhile.
"""

from __future__ import annotations

from redis.exceptions import RedisError

from proxy.errors import StateUnavailable
from proxy.state.engine import is_unavailable


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, RedisError) or is_unavailable(exc)


def outage_error(exc: BaseException) -> StateUnavailable:
    which = "Redis" if isinstance(exc, RedisError) else "the state database"
    return StateUnavailable(
        f"The gateway cannot reach {which} right now; try again shortly.",
        headers={"Retry-After": "1"},
    )
