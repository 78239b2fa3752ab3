"""Client dialects: the other protocols Switchyard speaks next to Chat Completions.

A dialect (the Responses API, Anthropic Messages, the Ollama API) is a translator at the
edge and nothing more: its routes decode the dialect's request, turn it into the internal
chat request, run that through the same ``Gateway`` as ``/v1/chat/completions``
(``proxy.dialects.bridge``), and turn the chat completion or chunk stream back into the
dialect's response or event stream. Routing, tenancy, limits, usage, extensions, the
cache and metrics are therefore shared, never re-implemented per dialect.

Each dialect is one package under ``proxy/dialects/`` with its translation rules written
down beside the code, registered by entry point (``switchyard.dialects``) and found by
name: the core never names one. A dialect also says which paths it owns (``prefixes``),
so that every error on them, including a 401 answered before the app runs, is rendered
in the dialect's own error shape, in one place (``Dialect.render_error``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

from proxy.errors import SwitchyardError, encode_error

if TYPE_CHECKING:
    from proxy.settings import Settings

ENTRY_POINT_GROUP = "switchyard.dialects"


class Dialect:
    """Base class of a dialect; subclasses set ``name`` and ``prefixes`` and give routes."""

    name: ClassVar[str]
    prefixes: ClassVar[tuple[str, ...]] = ()
    """Paths the dialect owns, with everything under them (``/v1/messages``, ``/api``):
    their errors are rendered in its shape."""
    identified_prefixes: ClassVar[tuple[str, ...]] = ()
    """Paths outside ``/v1/`` whose callers are identified like ``/v1`` callers (key or
    JWT, 401 otherwise) before the app runs (``/api/``)."""

    @classmethod
    def routes(cls, settings: Settings) -> list[Any]:
        """The dialect's Litestar route handlers (mounted at the app's root)."""
        return []

    @classmethod
    def render_error(cls, error: SwitchyardError) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and headers of ``error`` in this dialect (OpenAI's by default)."""
        return error.http_status, encode_error(error), error.headers


class OpenAIDialect(Dialect):
    """Chat Completions and the rest of ``/v1``: the dialect every other one falls back to."""

    name = "openai"


def registered_dialects() -> dict[str, type[Dialect]]:
    """Every dialect installed, by its registered name (all loaded: each has routes)."""
    return {e.name: e.load() for e in entry_points(group=ENTRY_POINT_GROUP)}


class DialectMap:
    """Which dialect owns a path: the longest matching prefix, else OpenAI's."""

    def __init__(self, dialects: Iterable[type[Dialect]]) -> None:
        owned = [(prefix.rstrip("/"), d) for d in dialects for prefix in d.prefixes]
        self._owned = sorted(owned, key=lambda item: len(item[0]), reverse=True)
        self.identified = tuple(p for d in dialects for p in d.identified_prefixes)

    @classmethod
    def of(cls, dialects: Mapping[str, type[Dialect]]) -> DialectMap:
        return cls(dialects.values())

    def for_path(self, path: str) -> type[Dialect]:
        for prefix, dialect in self._owned:
            if path == prefix or path.startswith(prefix + "/"):
                return dialect
        return OpenAIDialect
