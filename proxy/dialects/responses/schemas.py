"""Wire types of the Responses API (``POST /v1/responses``), as openai-python's
``types/responses`` defines them: the request (with its input items and tools), and
the ``Response`` object with its output items and usage.

Input items and tools are decoded one by one (``input_items``, ``tools``) rather than
as one tagged union, so an unknown item or tool type gets a 400 that names it and its
position (``input[2].type``) instead of msgspec's generic union message.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from proxy.errors import InvalidRequest, shown, shown_quoted
from proxy.schemas.base import UNSET, UnsetType, WireRequest, WireResponse, param_of

# --------------------------------------------------------------------------- request


class InputText(WireRequest, tag="input_text", tag_field="type"):
    text: str


class InputImage(WireRequest, tag="input_image", tag_field="type"):
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] = "auto"


class OutputText(WireRequest, tag="output_text", tag_field="type"):
    text: str
    annotations: list[dict[str, Any]] = []


class Refusal(WireRequest, tag="refusal", tag_field="type"):
    refusal: str


InputPart = InputText | InputImage
AssistantPart = OutputText | Refusal


class Message(WireRequest):
    """A ``message`` item (``EasyInputMessage``, an input message, or an assistant
    message given back as input)."""

    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[InputText | InputImage | OutputText | Refusal]
    type: Literal["message"] = "message"
    id: str | UnsetType | None = UNSET
    status: str | UnsetType | None = UNSET


class FunctionCall(WireRequest):
    call_id: str
    name: str
    arguments: str
    type: Literal["function_call"] = "function_call"
    id: str | UnsetType | None = UNSET
    status: str | UnsetType | None = UNSET


class FunctionCallOutput(WireRequest):
    call_id: str
    output: str | list[InputText | InputImage]
    type: Literal["function_call_output"] = "function_call_output"
    id: str | UnsetType | None = UNSET
    status: str | UnsetType | None = UNSET


InputItem = Message | FunctionCall | FunctionCallOutput
_ITEM_TYPES: dict[str, type[Any]] = {
    "message": Message,
    "function_call": FunctionCall,
    "function_call_output": FunctionCallOutput,
}


class FunctionTool(WireRequest):
    name: str
    type: Literal["function"] = "function"
    description: str | UnsetType | None = UNSET
    parameters: dict[str, Any] | UnsetType | None = UNSET
    strict: bool | UnsetType | None = UNSET


class WebSearchTool(WireRequest):
    type: Literal["web_search", "web_search_preview", "web_search_2025_08_26"]


class FileSearchTool(WireRequest):
    vector_store_ids: list[str]
    type: Literal["file_search"] = "file_search"
    max_num_results: int | UnsetType | None = UNSET


ToolParam = FunctionTool | WebSearchTool | FileSearchTool
_TOOL_TYPES: dict[str, type[Any]] = {
    "function": FunctionTool,
    "web_search": WebSearchTool,
    "web_search_preview": WebSearchTool,
    "web_search_2025_08_26": WebSearchTool,
    "file_search": FileSearchTool,
}


class TextFormat(WireRequest):
    type: Literal["text", "json_object", "json_schema"]
    name: str | UnsetType = UNSET
    schema: dict[str, Any] | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    strict: bool | UnsetType | None = UNSET


class TextConfig(WireRequest):
    format: TextFormat | UnsetType | None = UNSET
    verbosity: str | UnsetType | None = UNSET


class Reasoning(WireRequest):
    effort: str | UnsetType | None = UNSET
    summary: str | UnsetType | None = UNSET


class ResponsesRequest(WireRequest):
    model: str
    input: str | list[dict[str, Any]]
    instructions: str | UnsetType | None = UNSET
    tools: list[dict[str, Any]] | UnsetType | None = UNSET
    tool_choice: str | dict[str, Any] | UnsetType | None = UNSET
    parallel_tool_calls: bool | UnsetType | None = UNSET
    text: TextConfig | UnsetType | None = UNSET
    max_output_tokens: int | UnsetType | None = UNSET
    temperature: float | UnsetType | None = UNSET
    top_p: float | UnsetType | None = UNSET
    metadata: dict[str, str] | UnsetType | None = UNSET
    reasoning: Reasoning | UnsetType | None = UNSET
    truncation: Literal["auto", "disabled"] | UnsetType | None = UNSET
    store: bool | UnsetType | None = UNSET
    previous_response_id: str | UnsetType | None = UNSET
    stream: bool | None = False
    user: str | UnsetType | None = UNSET
    background: bool | UnsetType | None = UNSET
    conversation: str | dict[str, Any] | UnsetType | None = UNSET
    prompt: dict[str, Any] | UnsetType | None = UNSET

    def refuse_unsupported(self) -> None:
        """Features of OpenAI's own platform that a gateway cannot serve: a 400 naming
        them, rather than an answer that silently ignored them."""
        refused = {
            "background": "background responses",
            "conversation": "the Conversations API",
            "prompt": "stored prompt templates",
        }
        for name, what in refused.items():
            value = getattr(self, name)
            if value is not UNSET and value is not None and value is not False:
                raise InvalidRequest(
                    f"'{name}' is not supported: this gateway has no {what}.", param=name
                )

    @property
    def stored(self) -> bool:
        """``store`` defaults to true, as on OpenAI."""
        return self.store is not False


def _converted(value: Any, kind: type[Any], where: str) -> Any:
    try:
        return msgspec.convert(value, kind, strict=True, str_keys=True)
    except msgspec.ValidationError as exc:
        inner = param_of(exc)
        param = f"{where}.{inner}" if inner else where
        raise InvalidRequest(f"Invalid '{param}': {shown_quoted(str(exc))}", param=param) from None


def input_items(request: ResponsesRequest) -> list[InputItem]:
    """The request's ``input`` as typed items (a string is one user message)."""
    if isinstance(request.input, str):
        return [Message(role="user", content=request.input)]
    items: list[InputItem] = []
    for index, raw in enumerate(request.input):
        where = f"input[{index}]"
        kind = _ITEM_TYPES.get(str(raw.get("type", "message")))
        if kind is None:
            known = ", ".join(_ITEM_TYPES)
            raise InvalidRequest(
                f"Input items of type '{shown(str(raw.get('type')))}' are not supported "
                f"(supported: {known}).",
                param=f"{where}.type",
            )
        items.append(_converted(raw, kind, where))
    return items


def tool_params(request: ResponsesRequest) -> list[ToolParam]:
    """The request's ``tools``, typed; a tool type this gateway cannot serve is a 400."""
    tools: list[ToolParam] = []
    for index, raw in enumerate(request.tools or ()):
        where = f"tools[{index}]"
        kind = _TOOL_TYPES.get(str(raw.get("type")))
        if kind is None:
            raise InvalidRequest(
                f"The '{shown(str(raw.get('type')))}' tool is not supported by this gateway "
                "(supported: function, web_search, file_search).",
                param=f"{where}.type",
            )
        tools.append(_converted(raw, kind, where))
    return tools


# -------------------------------------------------------------------------- response


class OutputTextPart(WireResponse):
    text: str
    annotations: list[Any] = []
    logprobs: list[Any] = []
    type: Literal["output_text"] = "output_text"


class OutputMessage(WireResponse):
    id: str
    content: list[OutputTextPart]
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"] = "assistant"
    type: Literal["message"] = "message"


class FunctionCallItem(WireResponse):
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"]
    type: Literal["function_call"] = "function_call"


OutputItem = OutputMessage | FunctionCallItem


class InputTokensDetails(WireResponse):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(WireResponse):
    reasoning_tokens: int = 0


class ResponseUsage(WireResponse):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails = msgspec.field(default_factory=InputTokensDetails)
    output_tokens_details: OutputTokensDetails = msgspec.field(default_factory=OutputTokensDetails)


class IncompleteDetails(WireResponse):
    reason: str


class ResponseError(WireResponse):
    code: str
    message: str


class Response(WireResponse):
    """The ``response`` object. Fields the API always sends are always written (``None``
    included), since the SDK's types read them."""

    id: str
    created_at: int
    model: str
    output: list[OutputMessage | FunctionCallItem]
    status: Literal["completed", "failed", "in_progress", "incomplete"]
    object: Literal["response"] = "response"
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    metadata: dict[str, str] = {}
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"effort": None, "summary": None}
    )
    store: bool = True
    temperature: float | None = None
    text: dict[str, Any] = msgspec.field(default_factory=lambda: {"format": {"type": "text"}})
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = []
    top_p: float | None = None
    truncation: str = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
