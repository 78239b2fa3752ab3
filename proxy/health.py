"""What recent upstream calls say about one deployment.

The router records the outcome of every call it makes to a deployment (passive health)
and of every active probe (``health_probe_interval_s``). Only upstream failures count:
connect errors, timeouts, upstream 5xx and 429, adapter failures. The client's own
mistakes (an upstream 4xx, an invalid request, a client that went away) say nothing
about the deployment and are not recorded at all.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from proxy.errors import SwitchyardError
from proxy.schemas.health import LastError, RecentOutcomes

#: Longest error message kept: enough to tell what happened, not a whole upstream body.
_MESSAGE_CHARS = 200


def is_upstream_failure(error: BaseException) -> bool:
    """True for failures of the deployment, false for the client's own errors."""
    if isinstance(error, SwitchyardError):
        return error.retryable or error.http_status >= 500
    return isinstance(error, Exception)


def config_secrets(config: Any) -> list[str]:
    """Values in a deployment's config that must never be shown: its key and extra headers."""
    found = [getattr(config, "api_key", None)]
    headers = getattr(config, "headers", None)
    if isinstance(headers, dict):
        found += headers.values()
    return [value for value in found if isinstance(value, str) and len(value) >= 4]


class DeploymentHealth:
    """Outcomes of one deployment's latest ``window`` upstream calls."""

    __slots__ = ("_outcomes", "_secrets", "consecutive_failures", "last_error", "last_success_at")

    def __init__(self, window: int = 5, secrets: Iterable[str] = ()) -> None:
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._secrets = tuple(secrets)
        self.consecutive_failures = 0
        self.last_error: LastError | None = None
        self.last_success_at: float | None = None

    @property
    def window(self) -> int:
        return self._outcomes.maxlen or 1

    @property
    def known(self) -> bool:
        """Whether any call has been recorded yet."""
        return bool(self._outcomes)

    @property
    def unhealthy(self) -> bool:
        """Each of the last ``window`` calls failed (one success ends it)."""
        return self.consecutive_failures >= self.window

    def succeeded(self) -> None:
        self._outcomes.append(True)
        self.consecutive_failures = 0
        self.last_success_at = time.time()

    def failed(self, error: BaseException) -> None:
        self._outcomes.append(False)
        self.consecutive_failures += 1
        if isinstance(error, SwitchyardError):
            code, message = error.error_code, self._masked(error.message)
        else:  # a bug's message may hold anything: the server log has it
            code, message = None, "unexpected error (see the server log)"
        self.last_error = LastError(
            type=type(error).__name__, code=code, message=message, at=time.time()
        )

    def recent(self) -> RecentOutcomes:
        return RecentOutcomes(
            calls=len(self._outcomes), failures=sum(not ok for ok in self._outcomes)
        )

    def _masked(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        message = " ".join(message.split())
        if len(message) > _MESSAGE_CHARS:
            message = message[: _MESSAGE_CHARS - 1] + "…"
        return message
