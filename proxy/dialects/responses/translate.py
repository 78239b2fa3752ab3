"""Pure translation between the Responses API and Chat Completions (rules: see the
package docstring): a Responses request into a chat body, a ``ChatCompletion`` into a
``Response`` object."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from proxy.dialects.responses.schemas import (
    FileSearchTool,
    FunctionCall,
    FunctionCallItem,
    FunctionCallOutput,
    FunctionTool,
    IncompleteDetails,
    InputImage,
    InputItem,
    InputText,
    Message,
    OutputMessage,
    OutputText,
    OutputTextPart,
    Refusal,
    Response,
    ResponsesRequest,
    ResponseUsage,
    TextFormat,
    ToolParam,
    WebSearchTool,
)
from proxy.errors import InvalidRequest, shown
from proxy.schemas.base import UNSET
from proxy.schemas.chat import ChatCompletion, Usage

WEB_SEARCH = "web_search"
"""The server tool a ``web_search`` tool becomes (``extensions/tools``)."""
RAG_SEARCH = "rag_search"
"""The server tool a ``file_search`` tool becomes, over its ``vector_store_ids``."""

IdFactory = Callable[[str], str]


def new_id(prefix: str) -> str:
    """``resp_…``, ``msg_…``, ``fc_…``: the prefixes OpenAI's ids have."""
    return f"{prefix}_{secrets.token_hex(24)}"


def _given(value: Any) -> bool:
    return value is not UNSET and value is not None


# ------------------------------------------------------------------ request -> chat


def _part(part: InputText | InputImage, where: str) -> dict[str, Any]:
    if isinstance(part, InputText):
        return {"type": "text", "text": part.text}
    if not part.image_url:
        raise InvalidRequest(
            "input_image needs an image_url (a URL or a data: URL); this gateway has no "
            "Files API for file_id.",
            param=f"{where}.image_url",
        )
    return {"type": "image_url", "image_url": {"url": part.image_url, "detail": part.detail}}


def _content(parts: list[Any], where: str) -> str | list[dict[str, Any]]:
    """Text-only content as one string (every backend takes it), else chat parts."""
    if all(isinstance(p, InputText | OutputText) for p in parts):
        return "\n".join(p.text for p in parts)
    converted = []
    for index, part in enumerate(parts):
        if isinstance(part, OutputText | Refusal):
            raise InvalidRequest(
                f"'{part.__struct_config__.tag}' content belongs to assistant messages only.",
                param=f"{where}.content[{index}].type",
            )
        converted.append(_part(part, f"{where}.content[{index}]"))
    return converted


def _assistant_text(message: Message, where: str) -> str:
    if isinstance(message.content, str):
        return message.content
    texts = []
    for index, part in enumerate(message.content):
        if isinstance(part, OutputText | InputText):
            texts.append(part.text)
        elif isinstance(part, Refusal):
            texts.append(part.refusal)
        else:
            raise InvalidRequest(
                "Assistant messages carry output_text content only.",
                param=f"{where}.content[{index}].type",
            )
    return "".join(texts)


def input_messages(items: list[InputItem]) -> list[dict[str, Any]]:
    """Chat messages for input items: ``function_call`` items join the assistant
    message before them (one assistant turn with its tool calls); each
    ``function_call_output`` is a ``tool`` message."""
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        where = f"input[{index}]"
        if isinstance(item, Message):
            if item.role == "assistant":
                messages.append({"role": "assistant", "content": _assistant_text(item, where)})
            else:
                content = (
                    item.content if isinstance(item.content, str) else _content(item.content, where)
                )
                messages.append({"role": item.role, "content": content})
        elif isinstance(item, FunctionCall):
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutput):
            output = item.output
            if not isinstance(output, str):
                output = "\n".join(p.text for p in output if isinstance(p, InputText))
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
    return messages


def _function(tool: FunctionTool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if _given(tool.description):
        function["description"] = tool.description
    function["parameters"] = (
        tool.parameters if _given(tool.parameters) else {"type": "object", "properties": {}}
    )
    if _given(tool.strict):
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise InvalidRequest(
                f"tool_choice '{shown(choice)}' is not one of auto, none, required.",
                param="tool_choice",
            )
        return choice
    kind = choice.get("type")
    if kind == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    server = {"web_search": WEB_SEARCH, "web_search_preview": WEB_SEARCH}
    server["file_search"] = RAG_SEARCH
    if isinstance(kind, str) and kind in server:
        return {"type": "function", "function": {"name": server[kind]}}
    raise InvalidRequest(
        f"tool_choice of type '{shown(str(kind))}' is not supported (use auto, none, "
        "required or {type: function, name}).",
        param="tool_choice",
    )


def _response_format(fmt: TextFormat) -> dict[str, Any]:
    if fmt.type != "json_schema":
        return {"type": fmt.type}
    if not _given(fmt.schema) or not _given(fmt.name):
        raise InvalidRequest(
            "text.format of type json_schema needs a name and a schema.", param="text.format"
        )
    schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
    if _given(fmt.description):
        schema["description"] = fmt.description
    if _given(fmt.strict):
        schema["strict"] = fmt.strict
    return {"type": "json_schema", "json_schema": schema}


def _with_server_tools(
    options: Any, server_tools: list[str], collections: list[str]
) -> dict[str, Any]:
    """The client's ``switchyard`` field with the server tools (and RAG collections)
    that hosted tools map to added."""
    merged: dict[str, Any] = dict(options) if isinstance(options, dict) else {}
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'switchyard' must be an object.", param="switchyard")

    def listed(key: str) -> list[str]:
        value = merged.get(key) or []
        return [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)

    if server_tools:
        merged["tools"] = [*listed("tools"), *(t for t in server_tools if t not in listed("tools"))]
    if collections:
        merged["rag"] = [*listed("rag"), *(c for c in collections if c not in listed("rag"))]
    return merged


def chat_body(
    request: ResponsesRequest,
    items: list[InputItem],
    tools: list[ToolParam],
    *,
    client_body: dict[str, Any],
    history: list[dict[str, Any]],
    takes_reasoning: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """The chat body for ``request``; also this turn's input as chat messages (what a
    continuation stores) and warnings (parameters ignored).

    ``history`` is the chat messages of the ``previous_response_id`` chain;
    ``takes_reasoning``: whether the model's deployments take ``reasoning_effort``."""
    turn = input_messages(items)
    messages = list(history) + turn
    if _given(request.instructions):
        messages.insert(0, {"role": "system", "content": request.instructions})
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    warnings: list[str] = []
    functions, server_tools, collections = [], [], []
    for tool in tools:
        if isinstance(tool, FunctionTool):
            functions.append(_function(tool))
        elif isinstance(tool, WebSearchTool):
            server_tools.append(WEB_SEARCH)
        elif isinstance(tool, FileSearchTool):
            server_tools.append(RAG_SEARCH)
            collections.extend(tool.vector_store_ids)
    if functions:
        body["tools"] = functions
    options = client_body.get("switchyard")
    if server_tools or options is not None:
        body["switchyard"] = _with_server_tools(options, server_tools, collections)
    if _given(request.tool_choice):
        body["tool_choice"] = _tool_choice(request.tool_choice)  # type: ignore[arg-type]
    for name in ("parallel_tool_calls", "temperature", "top_p", "user"):
        value = getattr(request, name)
        if _given(value):
            body[name] = value
    if _given(request.max_output_tokens):
        body["max_completion_tokens"] = request.max_output_tokens
    text = request.text
    if _given(text) and _given(text.format):  # type: ignore[union-attr]
        body["response_format"] = _response_format(text.format)  # type: ignore[union-attr, arg-type]
    reasoning = request.reasoning
    if _given(reasoning) and _given(reasoning.effort):  # type: ignore[union-attr]
        if takes_reasoning:
            body["reasoning_effort"] = reasoning.effort  # type: ignore[union-attr]
        else:
            warnings.append(f"reasoning is not supported by model '{request.model}'; ignored")
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body, turn, warnings


# --------------------------------------------------------------- chat -> response


def response_shell(
    request: ResponsesRequest, client_body: dict[str, Any], response_id: str, created_at: int
) -> Response:
    """The ``Response`` before any output: what the request set, echoed."""
    text = client_body.get("text") if isinstance(client_body.get("text"), dict) else None
    reasoning = request.reasoning
    return Response(
        id=response_id,
        created_at=created_at,
        model=request.model,
        output=[],
        status="in_progress",
        instructions=request.instructions if _given(request.instructions) else None,  # type: ignore[arg-type]
        max_output_tokens=request.max_output_tokens if _given(request.max_output_tokens) else None,  # type: ignore[arg-type]
        metadata=request.metadata if _given(request.metadata) else {},  # type: ignore[arg-type]
        parallel_tool_calls=request.parallel_tool_calls is not False,
        previous_response_id=(
            request.previous_response_id if _given(request.previous_response_id) else None  # type: ignore[arg-type]
        ),
        reasoning={
            "effort": reasoning.effort if _given(reasoning) and _given(reasoning.effort) else None,  # type: ignore[union-attr]
            "summary": None,
        },
        store=request.stored,
        temperature=request.temperature if _given(request.temperature) else None,  # type: ignore[arg-type]
        text={"format": {"type": "text"}, **(text or {})},
        tool_choice=request.tool_choice if _given(request.tool_choice) else "auto",  # type: ignore[arg-type]
        tools=list(client_body.get("tools") or []),
        top_p=request.top_p if _given(request.top_p) else None,  # type: ignore[arg-type]
        truncation=request.truncation if _given(request.truncation) else "disabled",  # type: ignore[arg-type]
        user=request.user if _given(request.user) else None,  # type: ignore[arg-type]
    )


def response_usage(usage: Usage | None) -> ResponseUsage | None:
    if usage is None:
        return None
    return ResponseUsage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
    )


def finished(shell: Response, finish_reason: str | None) -> tuple[str, IncompleteDetails | None]:
    """Status and incomplete details for a chat ``finish_reason``."""
    if finish_reason == "length":
        return "incomplete", IncompleteDetails(reason="max_output_tokens")
    if finish_reason == "content_filter":
        return "incomplete", IncompleteDetails(reason="content_filter")
    return "completed", None


def to_response(
    completion: ChatCompletion, shell: Response, make_id: IdFactory = new_id
) -> Response:
    """The ``Response`` for a chat completion: a ``message`` item with the text, then a
    ``function_call`` item per tool call."""
    choice = completion.choices[0] if completion.choices else None
    status, incomplete = finished(shell, choice.finish_reason if choice else None)
    output: list[OutputMessage | FunctionCallItem] = []
    if choice is not None:
        message = choice.message
        text = message.content if message.content is not None else message.refusal
        if text:
            item_status: Literal["completed", "incomplete"] = (
                "incomplete" if status == "incomplete" else "completed"
            )
            output.append(
                OutputMessage(
                    id=make_id("msg"), content=[OutputTextPart(text=text)], status=item_status
                )
            )
        for call in message.tool_calls or ():
            output.append(
                FunctionCallItem(
                    id=make_id("fc"),
                    call_id=call.id,
                    name=call.function.name or "",  # type: ignore[arg-type]
                    arguments=call.function.arguments or "",  # type: ignore[arg-type]
                    status="completed",
                )
            )
    usage = completion.usage if completion.usage is not UNSET else None
    return msgspec.structs.replace(
        shell,
        output=output,
        status=status,
        incomplete_details=incomplete,
        usage=response_usage(usage),  # type: ignore[arg-type]
    )


def output_messages(response: Response) -> list[dict[str, Any]]:
    """The response's output as chat messages (what the next turn of a chain reads)."""
    text = "".join(
        part.text for item in response.output if isinstance(item, OutputMessage)
        for part in item.content
    )  # fmt: skip
    calls = [
        {
            "id": item.call_id,
            "type": "function",
            "function": {"name": item.name, "arguments": item.arguments},
        }
        for item in response.output
        if isinstance(item, FunctionCallItem)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return [message]


def input_item_records(items: list[InputItem], make_id: IdFactory = new_id) -> list[dict[str, Any]]:
    """The input items as ``GET /v1/responses/{id}/input_items`` lists them: each with
    an id and a status, a message's string content as one ``input_text`` part."""
    records = []
    for item in items:
        record = msgspec.to_builtins(item)
        if isinstance(item, Message):
            if isinstance(item.content, str):
                kind = "output_text" if item.role == "assistant" else "input_text"
                record["content"] = [{"type": kind, "text": item.content}]
            record["id"] = item.id if _given(item.id) else make_id("msg")
        elif isinstance(item, FunctionCall):
            record["id"] = item.id if _given(item.id) else make_id("fc")
        else:
            record["id"] = item.id if _given(item.id) else make_id("fco")
        record["status"] = "completed"
        records.append(record)
    return records


def now() -> int:
    return int(time.time())
