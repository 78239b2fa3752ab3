"""The extension protocol: hooks around one chat request, found by name.

An extension is a class registered in the ``switchyard.extensions`` entry-point group.
One instance lives for the app's lifetime; per-request state lives on the ``ChatCall``.
The pipeline (``extensions.pipeline``) calls, for the extensions a request activates,
in ascending ``order`` (persona 10, session 20, rag 30, tools 40):

1. ``validate``: reject unknown names with a 400 before anything happens;
2. ``before_request``: change the request (system prompt, history, context, tools);
3. ``execute``: at most one active extension may drive the model calls itself (the
   tool loop); otherwise the pipeline makes one call, streaming or not. For a
   streaming client, an extension that sets ``streams`` is asked ``execute_stream``
   instead, and its chunks go out as they come;
4. ``after_response``: see the final assistant message (store it), in reverse order,
   only when the request succeeded.

When a request activates no extension, none of this runs: the core's passthrough path
serves it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

from extensions.activation import Activation
from proxy.schemas.base import Envelope
from proxy.schemas.chat import ChatCompletionRequest
from proxy.state.records import DEFAULT_TEAM_ID

if TYPE_CHECKING:
    import httpx

    from proxy.metrics import Metrics
    from proxy.replicas import ReplicaPlan
    from proxy.router import Router
    from proxy.settings import Settings

ENTRY_POINT_GROUP = "switchyard.extensions"

#: Makes one non-streaming model call for ``call`` and returns the response as a dict.
ModelCall = Callable[["ChatCall"], Awaitable[dict[str, Any]]]
#: Opens one streaming model call for ``call`` (usage included): its chunks, as dicts.
StreamCall = Callable[["ChatCall"], Awaitable[AsyncIterator[dict[str, Any]]]]


@dataclass(slots=True)
class ChatCall:
    """One chat request on its way through the active extensions."""

    envelope: Envelope[ChatCompletionRequest]
    activation: Activation
    model: str
    key_id: str | None
    stream: bool
    #: The messages exactly as the client sent them (before any extension added to them).
    client_messages: list[dict[str, Any]]
    #: The ASGI ``receive`` of the request, to stop local work when the client leaves.
    receive: Callable[[], Awaitable[Any]] | None = None
    #: The tenancy check, run once the model and the active extensions are known:
    #: ``admit(model, extension_names)`` raises when the caller may not make this call.
    admit: Callable[[str, Iterable[str]], Awaitable[None]] | None = None
    #: The tenancy check of one extension, run as it becomes active and before it does
    #: any work: ``permit(name)`` raises when the caller may not use it.
    permit: Callable[[str], None] | None = None
    #: The caller's team: the owner of the RAG collections it may read.
    team_id: str = DEFAULT_TEAM_ID
    #: The response cache bound to this request (``proxy.cache.service.BoundCache``), or
    #: ``None``: used when no extension runs a tool loop.
    cache: Any = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    response_headers: dict[str, str] = field(default_factory=dict)
    scratch: dict[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.envelope.body["messages"]  # type: ignore[no-any-return]

    def set_messages(self, messages: list[dict[str, Any]]) -> None:
        self.envelope.update(messages=messages)


@dataclass(slots=True)
class ExtensionServices:
    """What the app lends to extensions (all owned by the lifespan)."""

    settings: Settings
    router: Router
    http: httpx.AsyncClient
    metrics: Metrics
    count_tokens: Callable[[str, str], Awaitable[int]]
    """``count_tokens(model, text)``: the model's tokenizer when it has one, else an estimate."""
    context_window: Callable[[str], int | None]
    store: Any = None
    """The state store (``proxy.state.StateStore``): extensions persist through its
    repositories (sessions), never through their own files."""
    extensions: dict[str, Extension] = field(default_factory=dict)
    """Every started extension by name (filled before any ``start``), for extensions that
    use another's services (the tool loop's ``rag_search`` reads the RAG store)."""


class Extension:
    name: ClassVar[str]
    order: ClassVar[int]

    def __init__(self, services: ExtensionServices) -> None:
        self.services = services

    async def start(self) -> None:
        """Open what the extension needs (called from the lifespan)."""

    async def aclose(self) -> None:
        """Release it."""

    def busy(self) -> bool:
        """Whether work this instance started outlives the requests that started it and
        is still running (a directory index). A configuration reload that replaces the
        instance closes it only once this is false."""
        return False

    def keep_on_reload(self, settings: Settings) -> bool:
        """Whether this instance may serve a reloaded configuration as it is (lent the
        new generation's ``services``) instead of being built and started again. The
        default builds it again, which is right for what is cheap to read (personas,
        tools); an extension that holds something costly (a vector store client, jobs)
        keeps itself while its own section is unchanged."""
        return False

    def active(self, activation: Activation) -> bool:
        raise NotImplementedError

    async def validate(self, call: ChatCall) -> None:
        """Raise ``InvalidRequest`` naming anything unknown.

        Runs before any ``before_request``. An extension may expand ``call.activation``
        here (a persona switches on its default tools and collections); extensions later
        in the order are checked for activity after it.
        """

    async def before_request(self, call: ChatCall) -> None:
        """Change the request before the model sees it."""

    #: Set by an extension that drives the model calls itself (see ``execute``).
    executes: ClassVar[bool] = False

    async def execute(self, call: ChatCall, model_call: ModelCall) -> dict[str, Any]:
        """Make the model calls for this request and return the final response."""
        raise NotImplementedError

    #: Set by an executing extension that can stream to a streaming client.
    streams: ClassVar[bool] = False

    async def execute_stream(
        self, call: ChatCall, model_call: ModelCall, stream_call: StreamCall
    ) -> AsyncIterator[dict[str, Any]]:
        """Like ``execute``, for a streaming client: the chunks it is to receive.

        Awaiting it runs the model calls up to the opening of the stream the first chunk
        comes from, so a failure before that is still an HTTP error status.
        """
        raise NotImplementedError

    async def after_response(self, call: ChatCall, reply: dict[str, Any]) -> None:
        """See the final assistant message of a successful request."""

    def model_ids(self) -> list[str]:
        """Extra ids for /v1/models (a persona lists itself as ``persona:<name>``)."""
        return []

    @classmethod
    def routes(cls, settings: Settings) -> list[Any]:
        """Litestar route handlers (or routers) this extension adds under /v1, guarded
        like /v1; ``settings`` for limits such as an upload size."""
        return []

    @classmethod
    def replica_problems(cls, settings: Settings, plan: ReplicaPlan) -> list[str]:
        """Why this extension cannot run ``settings`` as ``plan`` says (several worker
        processes, or replicas sharing a PostgreSQL state database), each in words an
        operator can act on. ``switchyard check-config`` and ``serve`` refuse the
        configuration when any is given."""
        return []


def registered_extensions() -> dict[str, type[Extension]]:
    return {entry.name: entry.load() for entry in entry_points(group=ENTRY_POINT_GROUP)}
