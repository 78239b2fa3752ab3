"""The extension protocol: hooks around one request, found by name.

Extensions are registered through the ``switchyard.extensions`` entry-point group.
When no extension is active, a request takes the core's passthrough path untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar, Protocol

ENTRY_POINT_GROUP = "switchyard.extensions"


class Extension(Protocol):
    name: ClassVar[str]

    async def before_request(self, request: Any) -> None:
        """Adjust the request before it is routed (add messages, defaults, tools)."""

    def on_stream(self, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Wrap the stream of typed chunks (observe or transform them)."""
        ...

    async def after_response(self, request: Any, response: Any) -> None:
        """See the finished response (store it, attach sources)."""
