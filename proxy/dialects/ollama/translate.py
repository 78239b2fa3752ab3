"""Pure translators of requests: Ollama requests -> internal request bodies.

Nothing here does I/O or reads a clock: times are passed in, so every rule is
unit-tested as a function (tests/unit/proxy/dialects/ollama/); the answers going back
are ``answers``. The rules themselves are listed in the package docstring
(``proxy.dialects.ollama``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

from proxy.dialects.ollama.answers import arguments_object
from proxy.dialects.ollama.wire import OllamaChatRequest, OllamaGenerateRequest, OllamaMessage
from proxy.errors import InvalidRequest, shown

LATEST = ":latest"

# ------------------------------------------------------------------------- model names


def model_name(name: str) -> str:
    """The Switchyard name a client's Ollama name means: ``smol:latest`` is ``smol``.

    A trailing ``:latest`` is dropped from the whole name and from the base model
    before the extension suffixes (``smol:latest+persona:editor`` and
    ``smol+persona:editor:latest`` both mean ``smol+persona:editor``)."""
    name = name.removesuffix(LATEST)
    base, plus, rest = name.partition("+")
    return base.removesuffix(LATEST) + plus + rest


def listed_name(name: str) -> str:
    """How ``/api/tags`` names a Switchyard model: with Ollama's ``:latest`` tag when
    the name has no tag of its own."""
    return name if ":" in name else name + LATEST


# ---------------------------------------------------------------------------- options

_INT_OPTIONS = frozenset(
    {
        "num_keep", "seed", "num_predict", "top_k", "repeat_last_n", "mirostat", "num_ctx",
        "num_batch", "num_gpu", "main_gpu", "num_thread",
    }
)  # fmt: skip
_FLOAT_OPTIONS = frozenset(
    {
        "top_p", "min_p", "typical_p", "temperature", "repeat_penalty", "presence_penalty",
        "frequency_penalty", "tfs_z", "mirostat_tau", "mirostat_eta",
    }
)  # fmt: skip
_BOOL_OPTIONS = frozenset(
    {"numa", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mmap", "use_mlock",
     "embedding_only", "penalize_newline"}
)  # fmt: skip
#: Options passed on under the same name (``top_k``, ``min_p`` and ``repeat_penalty``
#: are the llama.cpp-server extensions the local adapter reads).
_SAME_NAME = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty",
              "presence_penalty", "frequency_penalty")  # fmt: skip


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """``options`` with each known option's type checked as Ollama's ``FromMap`` does
    (an integer option takes any number, truncated; ``null`` is skipped); unknown
    options are ignored, as Ollama ignores them (it logs a warning)."""
    checked: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if value is None:
            continue
        if key in _INT_OPTIONS:
            if not _is_number(value) or not math.isfinite(value):
                raise InvalidRequest(f'option "{key}" must be of type integer', param=key)
            checked[key] = int(value)
        elif key in _FLOAT_OPTIONS:
            if not _is_number(value):
                raise InvalidRequest(f'option "{key}" must be of type float32', param=key)
            checked[key] = float(value)
        elif key in _BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise InvalidRequest(f'option "{key}" must be of type boolean', param=key)
            checked[key] = value
        elif key == "stop":
            if not isinstance(value, list):
                raise InvalidRequest('option "stop" must be of type array', param=key)
            if not all(isinstance(s, str) for s in value):
                raise InvalidRequest('option "stop" must be of an array of strings', param=key)
            checked[key] = value
    return checked


def sampling(options: dict[str, Any], context_window: int | None) -> dict[str, Any]:
    """The chat-request fields of checked ``options``.

    ``num_ctx`` cannot change a loaded model's context (its size is fixed by the
    model's configuration): a value within the window is accepted and has no effect;
    one beyond it is refused, since the request would expect room the model lacks."""
    out: dict[str, Any] = {}
    for key in _SAME_NAME:
        if key in options:
            out[key] = options[key]
    if options.get("num_predict", 0) > 0:  # -1 (infinite) and -2 (fill): the default
        out["max_tokens"] = options["num_predict"]
    if options.get("seed", -1) >= 0:  # Ollama's -1: a random seed
        out["seed"] = options["seed"]
    if options.get("stop"):
        out["stop"] = options["stop"]
    num_ctx = options.get("num_ctx")
    if num_ctx is not None and context_window is not None and num_ctx > context_window:
        raise InvalidRequest(
            f"num_ctx {num_ctx} is larger than this model's context window of "
            f"{context_window} tokens, which is fixed by its configuration (n_ctx).",
            param="num_ctx",
        )
    return out


# ----------------------------------------------------------------------------- format


def response_format(fmt: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """``format`` as a Chat Completions ``response_format``."""
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    raise InvalidRequest(
        f"invalid format '{shown(fmt)}': use \"json\" or a JSON schema", param="format"
    )


# ----------------------------------------------------------------------------- images

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_url(data: str, where: str) -> dict[str, Any]:
    """A base64 image as a chat ``image_url`` part (a data URL of its sniffed type)."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{where}: an image is not valid base64", param=where) from None
    mime = next((m for sig, m in _SIGNATURES if raw.startswith(sig)), None)
    if mime is None and raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        mime = "image/webp"
    if mime is None:
        raise InvalidRequest(f"{where}: an image is not PNG, JPEG, GIF or WebP data", param=where)
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def _content(text: str, images: list[str] | None, where: str) -> str | list[dict[str, Any]]:
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    field = f"{where}.images" if where else "images"
    return parts + [image_url(i, field) for i in images]


# ---------------------------------------------------------------------------- messages


def _tool_calls(message: OllamaMessage, index: int, pending: list[tuple[str, str]]) -> list[Any]:
    calls = []
    for n, call in enumerate(message.tool_calls or ()):
        call_id = call.id if isinstance(call.id, str) and call.id else f"call_{index}_{n}"
        pending.append((call_id, call.function.name))
        arguments = call.function.arguments
        if isinstance(arguments, str):  # must be an object
            arguments = json.dumps(arguments_object(arguments, call.function.name, InvalidRequest))
        else:
            arguments = json.dumps(arguments, ensure_ascii=False)
        calls.append(
            {
                "id": call_id,
                "type": "function",
                "function": {"name": call.function.name, "arguments": arguments},
            }
        )
    return calls


def _answered(message: OllamaMessage, index: int, pending: list[tuple[str, str]]) -> str:
    """The id of the call a ``tool`` message answers: its ``tool_call_id``, else the
    earliest unanswered call of its ``tool_name``, else the earliest unanswered call."""
    if message.tool_call_id:
        pending[:] = [p for p in pending if p[0] != message.tool_call_id]
        return message.tool_call_id
    for position, (call_id, name) in enumerate(pending):
        if name == message.tool_name:
            del pending[position]
            return call_id
    if pending:
        return pending.pop(0)[0]
    return f"call_{message.tool_name or index}"


_ROLES = frozenset({"system", "user", "assistant", "tool"})


def chat_messages(messages: list[OllamaMessage]) -> list[dict[str, Any]]:
    """Ollama messages as Chat Completions messages."""
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.role.lower()  # Ollama lower-cases roles
        if role not in _ROLES:
            raise InvalidRequest(
                f"{where}.role: unknown role '{shown(message.role)}' "
                "(system, user, assistant or tool)",
                param=f"{where}.role",
            )
        item: dict[str, Any] = {"role": role}
        if role == "tool":
            item["content"] = message.content or ""
            item["tool_call_id"] = _answered(message, index, pending)
        elif role == "assistant":
            calls = _tool_calls(message, index, pending)
            if calls:
                item["tool_calls"] = calls
            item["content"] = message.content or (None if calls else "")
            if message.images:
                raise InvalidRequest(
                    f"{where}.images: only user messages can carry images",
                    param=f"{where}.images",
                )
        else:
            item["content"] = _content(message.content or "", message.images, where)
        out.append(item)
    return out


def _common(
    body: dict[str, Any],
    fmt: str | dict[str, Any] | None,
    options: dict[str, Any],
    context_window: int | None,
    stream: bool,
) -> None:
    body.update(sampling(options, context_window))
    formatted = response_format(fmt)
    if formatted is not None:
        body["response_format"] = formatted
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}


def chat_body(
    request: OllamaChatRequest,
    model: str,
    options: dict[str, Any],
    *,
    context_window: int | None = None,
    extension: Any = None,
) -> dict[str, Any]:
    """The Chat Completions body of an ``/api/chat`` request (``model``: the
    Switchyard name; ``extension``: the client's ``switchyard`` field, unchanged)."""
    body: dict[str, Any] = {"model": model, "messages": chat_messages(request.messages or [])}
    if request.tools:
        for n, tool in enumerate(request.tools):
            if tool.get("type", "function") != "function" or not isinstance(
                tool.get("function"), dict
            ):
                raise InvalidRequest(
                    f"tools[{n}]: only function tools are supported", param=f"tools[{n}]"
                )
        body["tools"] = [{**tool, "type": "function"} for tool in request.tools]
    _common(body, request.format, options, context_window, stream_of(request.stream))
    if extension is not None:
        body["switchyard"] = extension
    return body


def generate_body(
    request: OllamaGenerateRequest,
    model: str,
    options: dict[str, Any],
    *,
    context_window: int | None = None,
    extension: Any = None,
) -> tuple[str, dict[str, Any]]:
    """The internal request of an ``/api/generate`` request: ``("chat", body)``, or
    ``("completions", body)`` for ``raw`` prompts and fill-in-the-middle (``suffix``)."""
    if request.template:
        raise InvalidRequest(
            "template is not supported: the model's own chat template is always used",
            param="template",
        )
    if request.raw and request.system:
        raise InvalidRequest(
            "raw mode does not support template, system, or context", param="system"
        )
    stream = stream_of(request.stream)
    if request.raw or request.suffix:
        if request.images:
            raise InvalidRequest(
                "images need the chat template: they cannot be used with raw or suffix",
                param="images",
            )
        if request.system:
            raise InvalidRequest("system cannot be used with suffix", param="system")
        body: dict[str, Any] = {"model": model, "prompt": request.prompt}
        if request.suffix:
            body["suffix"] = request.suffix
        if request.format not in (None, ""):
            raise InvalidRequest(
                "format needs the chat template: it cannot be used with raw or suffix",
                param="format",
            )
        _common(body, None, options, context_window, stream)
        if extension is not None:
            body["switchyard"] = extension
        return "completions", body
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": _content(request.prompt, request.images, "")})
    body = {"model": model, "messages": messages}
    _common(body, request.format, options, context_window, stream)
    if extension is not None:
        body["switchyard"] = extension
    return "chat", body


def stream_of(value: bool | None) -> bool:
    """Ollama streams unless told not to."""
    return value is None or value


# ------------------------------------------------------------------------- keep_alive

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_s(value: float | str | None) -> float | None:
    """``keep_alive`` in seconds (``inf``: forever; ``None``: not sent), parsed as
    Ollama parses it: a number of seconds, or a Go duration such as ``"5m"`` or
    ``"1h30m"``; anything negative means forever."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return math.inf if value < 0 else float(value)
    if not isinstance(value, str):
        raise InvalidRequest("keep_alive must be a number or a duration", param="keep_alive")
    text = value.strip()
    negative = text.startswith("-")
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    total, at = 0.0, 0
    for match in _DURATION.finditer(body):
        if match.start() != at:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        at = match.end()
    if not body or at != len(body):
        raise InvalidRequest(f'time: invalid duration "{shown(value)}"', param="keep_alive")
    return math.inf if negative else total
