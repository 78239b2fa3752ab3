"""The Ollama API's wire types (``api/types.go`` of github:ollama/ollama).

Requests keep Ollama's loose parsing where clients rely on it (``options`` is a free
mapping checked option by option, as ``Options.FromMap`` does); responses write the
fields Ollama writes, omitting the ones it marks ``omitempty`` when they are unknown.
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.schemas.base import UNSET, UnsetType, WireRequest

#: A ``keep_alive``: seconds (a number; negative: forever) or a Go duration ("5m").
KeepAlive = float | str | None
#: ``format``: ``"json"`` (any object), a JSON schema, or ``""`` (plain text).
Format = str | dict[str, Any] | None


class OllamaToolCallFunction(msgspec.Struct, kw_only=True):
    name: str
    arguments: dict[str, Any] | str = {}
    """An object, as Ollama sends it (a JSON string, as OpenAI clients send it, is
    accepted too)."""
    index: int | UnsetType = UNSET


class OllamaToolCall(msgspec.Struct, kw_only=True):
    function: OllamaToolCallFunction
    id: str | UnsetType = UNSET


class OllamaMessage(WireRequest):
    role: str
    content: str | None = ""
    """``null`` reads as empty (Go's zero value for the string)."""
    images: list[str] | None = None
    """Base64 image data (the Go client's ``[]byte`` encoding)."""
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    thinking: str | None = None


class OllamaChatRequest(WireRequest):
    model: str = ""
    messages: list[OllamaMessage] | None = None
    stream: bool | None = None
    format: Format = None
    keep_alive: KeepAlive = None
    tools: list[dict[str, Any]] | None = None
    options: dict[str, Any] | None = None
    think: bool | str | None = None
    truncate: bool | None = None
    shift: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class OllamaGenerateRequest(WireRequest):
    model: str = ""
    prompt: str = ""
    suffix: str = ""
    system: str = ""
    template: str = ""
    context: list[int] | None = None
    stream: bool | None = None
    raw: bool = False
    format: Format = None
    keep_alive: KeepAlive = None
    images: list[str] | None = None
    options: dict[str, Any] | None = None
    think: bool | str | None = None
    truncate: bool | None = None
    shift: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class OllamaEmbedRequest(WireRequest):
    model: str = ""
    input: str | list[Any] | None = None
    truncate: bool | None = None
    dimensions: int | None = None
    keep_alive: KeepAlive = None
    options: dict[str, Any] | None = None


class OllamaEmbeddingsRequest(WireRequest):
    model: str = ""
    prompt: str = ""
    keep_alive: KeepAlive = None
    options: dict[str, Any] | None = None


class OllamaShowRequest(WireRequest):
    model: str = ""
    name: str = ""
    """The older spelling of ``model``."""
    verbose: bool = False


# ------------------------------------------------------------------------ responses


class Metrics(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The timing and count fields of a final answer, nanoseconds; 0 means unknown and
    is not written (Ollama's ``omitempty``)."""

    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0


class ModelDetails(msgspec.Struct, kw_only=True):
    parent_model: str = ""
    format: str = ""
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""


class ListedModel(msgspec.Struct, kw_only=True):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails


class ListResponse(msgspec.Struct, kw_only=True):
    models: list[ListedModel]


class RunningModel(msgspec.Struct, kw_only=True):
    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails
    expires_at: str
    size_vram: int
    context_length: int


class ProcessResponse(msgspec.Struct, kw_only=True):
    models: list[RunningModel]


class ShowResponse(msgspec.Struct, kw_only=True):
    """Every field written: ``model_info`` must be (the ``ollama`` package requires it)."""

    modelfile: str = ""
    parameters: str = ""
    template: str = ""
    details: ModelDetails = msgspec.field(default_factory=ModelDetails)
    model_info: dict[str, Any] = msgspec.field(default_factory=dict)
    capabilities: list[str] = []
    modified_at: str = ""
