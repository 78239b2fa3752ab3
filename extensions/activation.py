"""Which extensions a request switches on, read from three equivalent places.

1. Headers: ``X-Switchyard-Persona: editor``, ``X-Switchyard-RAG: docs,notes``,
   ``X-Switchyard-Tools: web_fetch,rag_search``, ``X-Switchyard-Session: <id>``.
2. Body: ``"switchyard": {"persona": ..., "rag": [...], "tools": [...], "session": ...}``
   (what the OpenAI SDK's ``extra_body`` sends); removed before the request goes upstream.
3. Model name suffixes, for clients that can only choose a model name:
   ``writer-local+persona:editor+rag:docs+tools:web_fetch+session:abc``; a bare
   ``persona:editor`` names the persona and lets it choose its default model.

When the same extension is named in several places the body wins over headers, and
headers win over the model name (the most explicit place wins).
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy.errors import InvalidRequest, shown, shown_quoted

_LIST_KEYS = ("rag", "tools")
_SCALAR_KEYS = ("persona", "session")
KEYS = (*_SCALAR_KEYS, *_LIST_KEYS)
HEADER_PREFIX = "x-switchyard-"


class Activation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    persona: str | None = None
    rag: list[str] = []
    tools: list[str] = []
    session: str | None = None
    variables: dict[str, str] = {}
    """Values for ``{placeholders}`` in a persona's system prompt (body only)."""

    def __bool__(self) -> bool:
        return bool(self.persona or self.rag or self.tools or self.session)


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _from_model(model: str) -> tuple[str, dict[str, Any]]:
    base, *suffixes = model.split("+")
    found: dict[str, Any] = {}
    if base.startswith("persona:"):
        found["persona"] = base.removeprefix("persona:")
        base = ""
    for suffix in suffixes:
        key, sep, value = suffix.partition(":")
        if not sep or key not in KEYS or not value:
            raise InvalidRequest(
                f"Unknown model suffix '+{shown(suffix)}': use +persona:NAME, +rag:A,B, "
                "+tools:A,B or +session:ID.",
                param="model",
            )
        found[key] = _split(value) if key in _LIST_KEYS else value
    return base, found


def _from_headers(headers: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in KEYS:
        value = headers.get(HEADER_PREFIX + key)
        if value:
            found[key] = _split(value) if key in _LIST_KEYS else value.strip()
    return found


def _from_body(body: dict[str, Any]) -> dict[str, Any]:
    raw = body.pop("switchyard", None)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidRequest("'switchyard' must be an object.", param="switchyard")
    found = {}
    for key, value in raw.items():
        if key in _LIST_KEYS and isinstance(value, str):
            value = _split(value)
        found[key] = value
    return found


def read_activation(model: str, headers: Any, body: dict[str, Any]) -> tuple[str, Activation]:
    """Return the model name without suffixes and what the request activates.

    ``body`` loses its ``switchyard`` key, so the upstream never sees it.
    """
    base, merged = _from_model(model)
    merged.update(_from_headers(headers))
    merged.update(_from_body(body))
    try:
        activation = msgspec.convert(merged, Activation)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(
            f"Invalid 'switchyard' options: {shown_quoted(str(exc))}", param="switchyard"
        ) from None
    return base, activation


def refuse_activation(route: str, model: str, headers: Any, body: dict[str, Any]) -> None:
    """For an endpoint no extension applies to: drop ``switchyard``, refuse activations.

    Personas and sessions are conversations, tools are a chat loop, and RAG context
    belongs in a chat's system message: a raw completion prompt (often code, with a
    ``suffix``) has no place the gateway could put it without changing what the model
    was asked. So outside chat completions any activation (header, body field or
    model suffix) is a 400 naming it, and the ``switchyard`` field never reaches an
    upstream.
    """
    try:
        _, merged = _from_model(model)
    except InvalidRequest:  # not extension suffixes: routing reports an unknown model
        merged = {}
    merged.update(_from_headers(headers))
    merged.update(_from_body(body))
    asked = [key for key in KEYS if merged.get(key)]
    if asked:
        raise InvalidRequest(
            f"The '{asked[0]}' extension works with /v1/chat/completions only; "
            f"{route} cannot use it (asked for by a header, the 'switchyard' field "
            "or the model name).",
            param=asked[0],
        )


def form_options(fields: dict[str, Any]) -> dict[str, Any]:
    """Remove the ``switchyard`` options from parsed multipart ``fields`` and return them
    as a body would carry them (``{"switchyard": {...}}``, or ``{}``).

    A form carries them as one JSON ``switchyard`` field, or as ``switchyard[name]``
    parts, which is how the SDKs flatten ``extra_body`` into a multipart request.
    """
    options: dict[str, Any] = {}
    for name in [n for n in fields if n == "switchyard" or n.startswith("switchyard[")]:
        value = fields.pop(name)
        if name == "switchyard":
            try:
                decoded = msgspec.json.decode(value) if isinstance(value, str) else value
            except msgspec.DecodeError:
                raise InvalidRequest(
                    "The 'switchyard' form field must be a JSON object.", param="switchyard"
                ) from None
            if not isinstance(decoded, dict):
                raise InvalidRequest("'switchyard' must be an object.", param="switchyard")
            options.update(decoded)
        else:
            key = name[len("switchyard[") :].split("]", 1)[0]
            options[key] = value
    return {"switchyard": options} if options else {}
