"""A Messages request as the internal chat request (a Chat Completions body): pure.

The rules are listed in the package docstring (``proxy.dialects.anthropic``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.dialects.anthropic.wire import (
    Base64Source,
    CountTokensRequest,
    ImageBlock,
    InputMessage,
    MessagesRequest,
    OutputFormat,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolChoice,
    ToolParam,
    ToolResultBlock,
    ToolUseBlock,
)
from proxy.errors import InvalidRequest, shown
from proxy.schemas.base import UNSET

#: What a failed tool's result starts with, so that the model reads it as a failure
#: (Chat Completions tool messages have no error flag).
TOOL_ERROR_PREFIX = "Error: "

_encode = msgspec.json.Encoder().encode


def system_text(system: Any) -> str | None:
    """``system`` (a string or text blocks, ``cache_control`` ignored) as one text; the
    blocks are joined by a blank line."""
    if system is UNSET:
        return None
    if isinstance(system, str):
        return system
    return "\n\n".join(block.text for block in system)


def image_part(block: ImageBlock) -> dict[str, Any]:
    """An image block as a chat ``image_url`` part (base64 as a data URL)."""
    source = block.source
    if isinstance(source, Base64Source):
        url = f"data:{source.media_type};base64,{source.data}"
    else:
        url = source.url
    return {"type": "image_url", "image_url": {"url": url}}


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One text part as a plain string (what every upstream reads), else the parts."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def _tool_result(block: ToolResultBlock) -> tuple[dict[str, Any], list[Any]]:
    """A tool message for ``block``, and the images it returned (chat tool messages hold
    text only: the images follow in the user message after the tool messages)."""
    content = block.content
    images: list[dict[str, Any]] = []
    if content is UNSET:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        texts = []
        for item in content:
            if isinstance(item, TextBlock):
                texts.append(item.text)
            else:
                images.append(image_part(item))
        text = "\n".join(texts)
    if block.is_error:
        text = TOOL_ERROR_PREFIX + text if text else TOOL_ERROR_PREFIX.rstrip(": ")
    message = {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}
    return message, images


def _user_messages(message: InputMessage, index: int) -> list[dict[str, Any]]:
    where = f"messages[{index}]"
    if isinstance(message.content, str):
        return [{"role": "user", "content": message.content}]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        if isinstance(block, TextBlock):
            parts.append(_text_part(block.text))
        elif isinstance(block, ImageBlock):
            parts.append(image_part(block))
        elif isinstance(block, ToolResultBlock):
            tool, images = _tool_result(block)
            tools.append(tool)
            parts.extend(images)
        else:
            raise _wrong_role(block, "user", f"{where}.content[{j}]")
    out = list(tools)
    if parts:
        out.append({"role": "user", "content": _user_content(parts)})
    return out


def _assistant_message(message: InputMessage, index: int) -> dict[str, Any]:
    where = f"messages[{index}]"
    if isinstance(message.content, str):
        return {"role": "assistant", "content": message.content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            function = {"name": block.name, "arguments": _encode(block.input).decode()}
            calls.append({"id": block.id, "type": "function", "function": function})
        elif isinstance(block, ThinkingBlock | RedactedThinkingBlock):
            continue  # the model's earlier reasoning: not something a chat model reads
        else:
            raise _wrong_role(block, "assistant", f"{where}.content[{j}]")
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        out["tool_calls"] = calls
    return out


def _wrong_role(block: Any, role: str, where: str) -> InvalidRequest:
    kind = type(block).__struct_config__.tag
    return InvalidRequest(
        f"{where}: a '{kind}' block cannot appear in a message of role '{role}'.", param=where
    )


def chat_messages(params: CountTokensRequest) -> list[dict[str, Any]]:
    """The system prompt and the conversation as chat messages."""
    if not params.messages:
        raise InvalidRequest("messages: at least one message is required.", param="messages")
    out: list[dict[str, Any]] = []
    system = system_text(params.system)
    if system:
        out.append({"role": "system", "content": system})
    for index, message in enumerate(params.messages):
        if isinstance(message.content, list) and not message.content:
            raise InvalidRequest(
                f"messages[{index}].content: a message needs at least one content block.",
                param=f"messages[{index}].content",
            )
        if message.role == "user":
            out.extend(_user_messages(message, index))
        else:
            out.append(_assistant_message(message, index))
    return out


def chat_tools(tools: list[ToolParam]) -> list[dict[str, Any]]:
    out = []
    for index, tool in enumerate(tools):
        if tool.type not in (UNSET, None, "custom"):
            raise InvalidRequest(
                f"tools[{index}].type: the server tool type '{shown(tool.type)}' is not supported "
                "here; only client tools (name, description, input_schema) are.",
                param=f"tools[{index}].type",
            )
        if tool.input_schema is UNSET:
            raise InvalidRequest(
                f"tools[{index}].input_schema: Field required", param=f"tools[{index}]"
            )
        function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
        if tool.description is not UNSET:
            function["description"] = tool.description
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: ToolChoice) -> tuple[Any, bool | None]:
    """The chat ``tool_choice`` and ``parallel_tool_calls`` (None: not said)."""
    parallel = (
        None if choice.disable_parallel_tool_use is UNSET else not choice.disable_parallel_tool_use
    )
    if choice.type == "tool":
        if choice.name is UNSET:
            raise InvalidRequest(
                "tool_choice.name: Field required for tool_choice type 'tool'.",
                param="tool_choice.name",
            )
        return {"type": "function", "function": {"name": choice.name}}, parallel
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type], parallel


def _tooling(params: CountTokensRequest, body: dict[str, Any]) -> None:
    if params.tools is not UNSET and params.tools:
        body["tools"] = chat_tools(params.tools)
    if params.tool_choice is not UNSET:
        choice, parallel = chat_tool_choice(params.tool_choice)
        if "tools" in body or choice == "none":
            body["tool_choice"] = choice
        if parallel is not None and "tools" in body:
            body["parallel_tool_calls"] = parallel


def chat_body(params: MessagesRequest, raw: dict[str, Any]) -> dict[str, Any]:
    """The chat request for a Messages request; ``raw`` is the client's JSON object (its
    ``switchyard`` field passes on unchanged)."""
    if params.max_tokens < 1:
        raise InvalidRequest("max_tokens: must be at least 1.", param="max_tokens")
    body: dict[str, Any] = {
        "model": params.model,
        "messages": chat_messages(params),
        "max_tokens": params.max_tokens,
    }
    _tooling(params, body)
    if params.stop_sequences is not UNSET and params.stop_sequences:
        body["stop"] = list(params.stop_sequences)
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(params, name)
        if value is not UNSET:
            body[name] = value
    if params.metadata is not UNSET and isinstance(params.metadata.user_id, str):
        body["user"] = params.metadata.user_id
    output = params.output_config
    if output is not UNSET and isinstance(output.format, OutputFormat):
        schema = {"name": "output", "schema": output.format.schema, "strict": True}
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    if params.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if "switchyard" in raw:
        body["switchyard"] = raw["switchyard"]
    return body


def count_body(params: CountTokensRequest) -> dict[str, Any]:
    """The ``/v1/tokens/count`` request for a ``count_tokens`` request: the chat messages
    and tools, counted as the model's chat template renders them."""
    body: dict[str, Any] = {"model": params.model, "messages": chat_messages(params)}
    _tooling(params, body)
    body.pop("parallel_tool_calls", None)
    return body
