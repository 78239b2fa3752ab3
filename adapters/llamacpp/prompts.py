"""Chat messages -> the prompt the model was trained on, via its chat template.

The template is the one stored in the GGUF (``tokenizer.chat_template``), a named
one, or a Jinja string from the config; ChatML when the file has none. It is rendered
in a sandbox the way Hugging Face's ``apply_chat_template`` does.

Tool use is written into the conversation in one format, whatever the template: the
tools are described in the system message, the assistant's calls of one turn are one
``<tool_call>[{"name": ..., "arguments": ...}, ...]</tool_call>`` block (a JSON list the
model closes itself) and tool results are
``<tool_response>`` blocks in a user turn. Many templates know nothing of tools (or
reject a ``tool`` role), and the grammar that constrains the output (``tools.py``)
must agree with what the prompt shows the model.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from llama_cpp import llama_chat_format as formats

from proxy.errors import InvalidRequest, shown
from proxy.schemas.base import UNSET
from proxy.schemas.chat import ChatMessage

NAMED_TEMPLATES = {
    "chatml": formats.CHATML_CHAT_TEMPLATE,
    "llama-3": formats.LLAMA3_INSTRUCT_CHAT_TEMPLATE,
    "mistral-instruct": formats.MISTRAL_INSTRUCT_CHAT_TEMPLATE,
    "mixtral-instruct": formats.MIXTRAL_INSTRUCT_CHAT_TEMPLATE,
}

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, **kw: Any) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, sort_keys=kw.get("sort_keys", False)
    )


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


def template_source(llm: Any, chat_format: str | None) -> str:
    if chat_format is None:
        return llm.metadata.get("tokenizer.chat_template") or formats.CHATML_CHAT_TEMPLATE
    if chat_format in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[chat_format]
    if "{{" in chat_format or "{%" in chat_format:
        return chat_format
    raise ValueError(
        f"unknown chat_format '{chat_format}' (use one of {', '.join(NAMED_TEMPLATES)}, "
        "a Jinja template, or null for the GGUF's own)"
    )


def tool_calls_text(calls: list[tuple[str, str]]) -> str:
    """Calls (name, arguments JSON) as the model writes them, and as the grammar allows."""
    listed = ", ".join(
        f'{{"name": {json.dumps(name)}, "arguments": {args}}}' for name, args in calls
    )
    return f"{TOOL_CALL_OPEN}\n[{listed}]\n{TOOL_CALL_CLOSE}"


def tool_call_text(name: str, arguments: Any) -> str:
    """One call as the model writes it (a list of one)."""
    return tool_calls_text([(name, arguments)])


def tools_system_text(tools: list[dict[str, Any]], *, parallel: bool = True) -> str:
    listed = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    if parallel:
        offer = "one or more functions"
        how = "Return all the function calls in one JSON list, each call once,"
    else:
        offer = "one function"
        how = "Return the function call as a JSON list of one object"
    return (
        f"You may call {offer} to assist with the user query. The function signatures "
        f"are within <tools></tools> XML tags:\n<tools>\n{listed}\n</tools>\n"
        f"{how} within {TOOL_CALL_OPEN}{TOOL_CALL_CLOSE} XML tags:\n"
        f'{TOOL_CALL_OPEN}\n[{{"name": <function-name>, "arguments": <args-json-object>}}]\n'
        f"{TOOL_CALL_CLOSE}"
    )


def _text(message: ChatMessage, index: int) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InvalidRequest(
                f"This model reads text only; content part type '{shown(part.get('type'))}' "
                "is not supported.",
                param=f"messages[{index}].content",
            )
        parts.append(part["text"])
    return "\n".join(parts)


def _arguments_json(raw: Any) -> str:
    if isinstance(raw, str):
        try:
            return json.dumps(json.loads(raw), ensure_ascii=False)
        except (ValueError, RecursionError):
            return raw
    return json.dumps(raw, ensure_ascii=False)


def to_template_messages(
    messages: list[ChatMessage], tools_text: str | None
) -> list[dict[str, str]]:
    """OpenAI messages as plain ``{role, content}`` dicts every template can render."""
    out: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        role = message.role
        text = _text(message, index)
        if role == "developer":
            role = "system"
        if role in ("tool", "function"):
            block = f"<tool_response>\n{text}\n</tool_response>"
            if out and out[-1].get("_tool"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool": "1"})
            continue
        if role == "assistant" and message.tool_calls is not UNSET and message.tool_calls:
            calls = []
            for j, call in enumerate(message.tool_calls):
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                    raise InvalidRequest(
                        "An assistant tool call needs function.name.",
                        param=f"messages[{index}].tool_calls[{j}].function",
                    )
                calls.append((function["name"], _arguments_json(function.get("arguments", "{}"))))
            text = "\n".join([*([text] if text else []), tool_calls_text(calls)])
        out.append({"role": role, "content": text})
    for entry in out:
        entry.pop("_tool", None)
    if tools_text:
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{tools_text}"
        else:
            out.insert(0, {"role": "system", "content": tools_text})
    return out


def _merge_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """System text folded into the first user turn, for templates that reject the role."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system:
        for m in rest:
            if m["role"] == "user":
                m["content"] = f"{system}\n\n{m['content']}"
                break
        else:
            rest.insert(0, {"role": "user", "content": system})
    return rest


class ChatRenderer:
    def __init__(self, llm: Any, chat_format: str | None) -> None:
        env = ImmutableSandboxedEnvironment(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[formats.Jinja2ChatFormatter.IgnoreGenerationTags, jinja2.ext.loopcontrols],
        )
        env.filters["tojson"] = _tojson
        self._template = env.from_string(template_source(llm, chat_format))
        model = llm._model
        bos, eos = llm.token_bos(), llm.token_eos()
        self.bos_text = model.token_get_text(bos) if bos >= 0 else ""
        self.eos_text = model.token_get_text(eos) if eos >= 0 else ""

    def _render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return self._template.render(
            messages=messages,
            bos_token=self.bos_text,
            eos_token=self.eos_text,
            add_generation_prompt=add_generation_prompt,
            raise_exception=_raise,
            strftime_now=lambda f: datetime.now().strftime(f),
        )

    def render(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        try:
            return self._render(messages, add_generation_prompt)
        except jinja2.TemplateError as first:
            if not any(m["role"] == "system" for m in messages):
                raise InvalidRequest(
                    f"The model's chat template rejected the messages: {shown(first)}",
                    param="messages",
                ) from None
        try:
            return self._render(_merge_system(messages), add_generation_prompt)
        except jinja2.TemplateError as exc:
            raise InvalidRequest(
                f"The model's chat template rejected the messages: {shown(exc)}", param="messages"
            ) from None


def renderer_of(llm: Any, chat_format: str | None) -> ChatRenderer:
    """One renderer per loaded model and format (compiling a template takes milliseconds)."""
    cache: dict[str | None, ChatRenderer] = llm.__dict__.setdefault("_switchyard_renderers", {})
    renderer = cache.get(chat_format)
    if renderer is None:
        renderer = cache[chat_format] = ChatRenderer(llm, chat_format)
    return renderer


def tokenize_prompt(llm: Any, text: str) -> list[int]:
    """Tokens of a rendered prompt: special tokens parsed, one BOS when the model wants it."""
    tokens: list[int] = llm.tokenize(text.encode(), add_bos=False, special=True)
    bos = llm.token_bos()
    if llm._model.add_bos_token() and bos >= 0 and (not tokens or tokens[0] != bos):
        tokens.insert(0, bos)
    return tokens
