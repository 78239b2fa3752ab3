"""A Chat Completions request as an Anthropic Messages request (pure functions).

RULES (OpenAI chat request -> ``POST /v1/messages`` body):

- ``system`` and ``developer`` messages, wherever they stand, become the top-level
  ``system`` in their order: a string when there is one plain system text, else a
  list of text blocks (a part's ``cache_control`` is kept).
- ``user`` content: a string stays a string; parts become blocks: ``text`` -> text,
  ``image_url`` with a ``data:image/...;base64,`` URL -> an ``image`` block with a
  ``base64`` source (jpeg, png, gif, webp), with an ``http(s)`` URL -> a ``url`` source;
  ``file`` with a PDF data URL -> a ``document`` block. Other parts (audio, file ids)
  are a 400: Anthropic has no equivalent.
- ``assistant`` content becomes text blocks (refusal parts as text), followed by one
  ``tool_use`` block per ``tool_calls`` entry (``id``, ``name``, ``input`` = the parsed
  ``arguments`` JSON object; arguments that are not a JSON object are a 400).
- ``tool`` messages become ``tool_result`` blocks (``tool_use_id`` = ``tool_call_id``)
  of a user message. Consecutive messages of one role (tool results, then a user's
  text) are merged into one message, because the API alternates user and assistant
  turns and wants a turn's tool results first. Characters the API refuses in tool ids
  are replaced by ``_``, alike in ``tool_use`` and ``tool_result``. Legacy ``function``
  messages are a 400.
- An assistant message with nothing in it (no text, no tool calls) is left out.
- ``tools`` (function tools only) -> ``{name, description, input_schema}`` (``strict``
  kept when true); ``tool_choice`` ``auto`` / ``none`` / ``required`` (-> ``any``) /
  a named function (-> ``{"type": "tool", "name"}``); ``parallel_tool_calls: false`` ->
  ``disable_parallel_tool_use: true``. Without tools, tool_choice is dropped.
- ``max_completion_tokens``, else ``max_tokens``, else the deployment's
  ``default_max_tokens`` (the API requires one) -> ``max_tokens``.
- ``stop`` -> ``stop_sequences``; ``temperature`` and ``top_p`` as they are (the API
  takes temperature in 0..1 and answers a 400 beyond), except ``top_p: 1``, which
  changes nothing and which recent models refuse next to a temperature;
  ``user`` -> ``metadata.user_id``.
- ``response_format``: ``json_schema`` -> ``output_config.format`` (``{"type":
  "json_schema", "schema"}``, Anthropic's structured outputs); ``json_object`` has no
  native equivalent: a system instruction asks for one JSON object, which is
  best-effort, not enforced; ``text`` -> nothing.
- Passed on from the client's body as they are (Anthropic's own parameters, which an
  OpenAI client can send as extra fields): ``top_k``, ``thinking``.
- Dropped (no Anthropic equivalent, harmless to ignore): ``seed``, ``presence_penalty``,
  ``frequency_penalty``, ``logit_bias``, ``n: 1``, ``logprobs: false``, ``metadata``,
  ``store``, ``service_tier``, ``reasoning_effort`` and every other OpenAI-only field.
  ``n > 1`` and ``logprobs: true`` are a 400: their answer cannot be produced.
"""

from __future__ import annotations

import binascii
import re
from typing import Any

import msgspec

from proxy.errors import InvalidRequest, UnsupportedCapability, shown
from proxy.schemas.chat import ChatCompletionRequest, ChatMessage, Tool

PASSED_THROUGH = ("top_k", "thinking")
"""Anthropic parameters read from the client's body and sent as they are."""

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

JSON_OBJECT_INSTRUCTION = (
    "Respond with a single valid JSON object and nothing else: no prose and no code fences."
)

_NOT_IN_TOOL_IDS = re.compile(r"[^a-zA-Z0-9_-]")
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)((?:;[\w-]+=[^;,]*)*);base64,", re.IGNORECASE)
_decode_arguments = msgspec.json.Decoder().decode


def tool_id(ident: str) -> str:
    """A tool call id as the API accepts one (``^[a-zA-Z0-9_-]+$``): ids made elsewhere
    (another provider's, a client's) have their other characters replaced, the same
    way in the ``tool_use`` and in its ``tool_result``, so the two still pair."""
    return _NOT_IN_TOOL_IDS.sub("_", ident) or "_"


def _unsupported(message: str, param: str) -> UnsupportedCapability:
    return UnsupportedCapability(f"{message} (the Anthropic Messages API has none).", param=param)


def _data_url(url: str, param: str) -> tuple[str, str]:
    """(media type, base64 payload) of a base64 ``data:`` URL."""
    found = _DATA_URL.match(url)
    if found is None:
        raise InvalidRequest(
            "A data URL must look like data:<media type>;base64,<data>.", param=param
        )
    payload = url[found.end() :]
    try:
        binascii.a2b_base64(payload.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidRequest("The data URL's payload is not valid base64.", param=param) from None
    return found.group(1).lower(), payload


def _image_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise InvalidRequest("An image_url part needs image_url.url.", param=f"{param}.image_url")
    param = f"{param}.image_url.url"
    if url.startswith("data:"):
        media_type, data = _data_url(url, param)
        if media_type not in IMAGE_TYPES:
            raise InvalidRequest(
                f"Images must be JPEG, PNG, GIF or WebP for an Anthropic model, not "
                f"{shown(media_type)}.",
                param=param,
            )
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise InvalidRequest("An image URL must be http(s) or a base64 data URL.", param=param)
    return {"type": "image", "source": source}


def _file_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    given = part.get("file")
    file: dict[str, Any] = given if isinstance(given, dict) else {}
    data = file.get("file_data")
    if not isinstance(data, str):
        raise _unsupported("Files by file_id are not supported", f"{param}.file")
    media_type, payload = _data_url(data, f"{param}.file.file_data")
    if media_type != "application/pdf":
        raise _unsupported(f"Files of type {shown(media_type)} are not supported", param)
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": payload},
    }
    if isinstance(file.get("filename"), str):
        block["title"] = file["filename"]
    return block


def _text_block(part: dict[str, Any], param: str, key: str = "text") -> dict[str, Any]:
    text = part.get(key)
    if not isinstance(text, str):
        raise InvalidRequest(f"A {part.get('type')} part needs a string '{key}'.", param=param)
    block: dict[str, Any] = {"type": "text", "text": text}
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _blocks(content: list[dict[str, Any]], param: str, *, role: str) -> list[dict[str, Any]]:
    """Content parts as content blocks; empty text is left out (the API refuses it)."""
    blocks = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        kind = part.get("type")
        if kind == "text":
            block = _text_block(part, where)
        elif kind == "refusal" and role == "assistant":
            block = _text_block(part, where, "refusal")
        elif kind == "image_url" and role == "user":
            block = _image_block(part, where)
        elif kind == "file" and role == "user":
            block = _file_block(part, where)
        else:
            raise _unsupported(
                f"Content parts of type {shown(str(kind))} in {role} messages are not supported",
                f"{where}.type",
            )
        if block["type"] != "text" or block["text"]:
            blocks.append(block)
    return blocks


def _system_blocks(message: ChatMessage, param: str) -> list[dict[str, Any]]:
    content = message.content
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if content is None:
        return []
    return [
        block
        for index, part in enumerate(content)
        if (block := _text_block(part, f"{param}[{index}]"))["text"]
    ]


def _tool_use(call: dict[str, Any], param: str) -> dict[str, Any]:
    function = call.get("function")
    if call.get("type", "function") != "function" or not isinstance(function, dict):
        raise _unsupported("Only function tool calls are supported", f"{param}.type")
    ident, name = call.get("id"), function.get("name")
    if not isinstance(ident, str) or not isinstance(name, str):
        raise InvalidRequest("A tool call needs an id and a function name.", param=param)
    arguments = function.get("arguments") or "{}"
    try:
        parsed = _decode_arguments(arguments) if isinstance(arguments, str) else arguments
    except msgspec.DecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidRequest(
            "A tool call's arguments must be a JSON object (Anthropic's tool_use input).",
            param=f"{param}.function.arguments",
        )
    return {"type": "tool_use", "id": tool_id(ident), "name": name, "input": parsed}


def _tool_result(message: ChatMessage, param: str) -> dict[str, Any]:
    if not isinstance(message.tool_call_id, str):
        raise InvalidRequest("A tool message needs a tool_call_id.", param=f"{param}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(message.tool_call_id)}
    content = message.content
    if isinstance(content, list):
        block["content"] = _blocks(content, f"{param}.content", role="tool")
    elif content:
        block["content"] = content
    return block


def _turn(message: ChatMessage, param: str) -> tuple[str, list[dict[str, Any]] | str]:
    """The Anthropic role and content of a user, assistant or tool message."""
    content = message.content
    if message.role == "tool":
        return "user", [_tool_result(message, param)]
    if message.role == "function":
        raise _unsupported("Legacy 'function' messages are not supported; use tool", param)
    if message.role == "user":
        if isinstance(content, list):
            return "user", _blocks(content, f"{param}.content", role="user")
        return "user", content or ""
    blocks: list[dict[str, Any]] = []
    if isinstance(content, str) and content:
        blocks.append({"type": "text", "text": content})
    elif isinstance(content, list):
        blocks = _blocks(content, f"{param}.content", role="assistant")
    calls = message.tool_calls if isinstance(message.tool_calls, list) else []
    for index, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{param}.tool_calls[{index}]"))
    if not calls and isinstance(content, str):
        return "assistant", content
    return "assistant", blocks


def _as_blocks(content: list[dict[str, Any]] | str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content


def convert_messages(
    messages: list[ChatMessage],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, alternating Anthropic messages) of a chat's messages."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if message.role in ("system", "developer"):
            system += _system_blocks(message, f"{param}.content")
            continue
        role, content = _turn(message, param)
        if role == "assistant" and not content:
            continue  # nothing said: an empty assistant turn is refused upstream
        if turns and turns[-1]["role"] == role:
            previous = turns[-1]
            previous["content"] = _as_blocks(previous["content"]) + _as_blocks(content)
            continue
        turns.append({"role": role, "content": content})
    return system, turns


def _tool(tool: Tool, param: str) -> dict[str, Any]:
    if tool.type != "function":
        raise _unsupported(f"Tools of type {shown(tool.type)} are not supported", f"{param}.type")
    function = tool.function
    schema = function.parameters if isinstance(function.parameters, dict) else None
    out: dict[str, Any] = {
        "name": function.name,
        "input_schema": schema or {"type": "object", "properties": {}},
    }
    if isinstance(function.description, str):
        out["description"] = function.description
    if function.strict is True:
        out["strict"] = True
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None or choice is msgspec.UNSET:
        out: dict[str, Any] | None = {"type": "auto"} if parallel is False else None
    elif choice in ("auto", "none"):
        out = {"type": choice}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise InvalidRequest("tool_choice names no function.", param="tool_choice.function")
        out = {"type": "tool", "name": name}
    else:
        raise _unsupported(f"tool_choice {shown(str(choice))} is not supported", "tool_choice")
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _response_format(params: ChatCompletionRequest) -> tuple[dict[str, Any] | None, bool]:
    """(``output_config``, whether to ask for JSON in the system prompt)."""
    wanted = params.response_format
    if wanted is None or wanted is msgspec.UNSET or wanted.type == "text":
        return None, False
    if wanted.type == "json_object":
        return None, True
    spec = wanted.json_schema if isinstance(wanted.json_schema, dict) else {}
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise InvalidRequest(
            "response_format json_schema needs json_schema.schema.",
            param="response_format.json_schema.schema",
        )
    return {"format": {"type": "json_schema", "schema": schema}}, False


COUNTED = ("model", "messages", "system", "tools", "tool_choice", "thinking")
"""The fields of a messages body that ``POST /v1/messages/count_tokens`` takes."""


def to_count_tokens_body(
    prompt: str | None,
    params: ChatCompletionRequest | None,
    body: dict[str, Any],
    *,
    model: str,
) -> dict[str, Any]:
    """The ``/v1/messages/count_tokens`` body for a ``/v1/tokens/count`` request: its
    ``prompt`` as one user message, or its chat ``messages`` (and ``tools``) translated
    as a chat request would be."""
    if prompt is not None:
        return {"model": model, "messages": [{"role": "user", "content": prompt}]}
    assert params is not None
    full = to_messages_body(params, body, model=model, default_max_tokens=1, stream=False)
    return {name: full[name] for name in COUNTED if name in full}


def _given(value: Any) -> bool:
    return value is not None and value is not msgspec.UNSET


def to_messages_body(
    params: ChatCompletionRequest,
    body: dict[str, Any],
    *,
    model: str,
    default_max_tokens: int,
    stream: bool,
) -> dict[str, Any]:
    """The ``/v1/messages`` body for the chat request ``params`` (``body`` is the
    client's JSON, for the Anthropic parameters it may carry: ``PASSED_THROUGH``)."""
    if _given(params.n) and params.n != 1:
        raise _unsupported("More than one choice (n > 1) is not supported", "n")
    if params.logprobs is True:
        raise _unsupported("logprobs are not supported", "logprobs")
    system, messages = convert_messages(params.messages)
    if not messages:
        raise InvalidRequest(
            "At least one user or assistant message is required besides system messages.",
            param="messages",
        )
    output_config, json_instruction = _response_format(params)
    if json_instruction:
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    limit = params.max_completion_tokens
    if not _given(limit):
        limit = params.max_tokens if _given(params.max_tokens) else default_max_tokens
    out: dict[str, Any] = {"model": model, "max_tokens": limit, "messages": messages}
    if len(system) == 1 and set(system[0]) == {"type", "text"}:
        out["system"] = system[0]["text"]
    elif system:
        out["system"] = system
    if isinstance(params.tools, list) and params.tools:
        out["tools"] = [_tool(t, f"tools[{i}]") for i, t in enumerate(params.tools)]
        choice = _tool_choice(params.tool_choice, params.parallel_tool_calls)
        if choice is not None:
            out["tool_choice"] = choice
    if _given(params.stop):
        stop = [params.stop] if isinstance(params.stop, str) else params.stop
        if stop:
            out["stop_sequences"] = stop
    if _given(params.temperature):
        out["temperature"] = params.temperature
    if _given(params.top_p) and params.top_p != 1:  # type: ignore[operator]
        out["top_p"] = params.top_p
    if isinstance(params.user, str) and params.user:
        out["metadata"] = {"user_id": params.user}
    if output_config is not None:
        out["output_config"] = output_config
    for name in PASSED_THROUGH:
        if name in body and body[name] is not None:
            out[name] = body[name]
    if stream:
        out["stream"] = True
    return out
