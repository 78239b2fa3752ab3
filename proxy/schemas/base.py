"""The policy every wire type shares, and the decoded-request envelope.

A gateway must forward what it does not understand: a provider's new parameter, or a
field in a message that only one upstream knows, must reach that upstream untouched.
msgspec Structs validate types but drop unknown keys, so a decoded request keeps two
views of one body: ``params``, the typed Struct used for validation and for reading
parameters, and ``body``, the JSON object exactly as the client sent it, which is what
OpenAI-compatible upstreams receive. ``Envelope.update`` changes both together, so
they never disagree.
"""

from __future__ import annotations

import re
from typing import Any, Generic, TypeVar

import msgspec

from proxy.errors import InvalidRequest, shown_quoted

UNSET = msgspec.UNSET
UnsetType = msgspec.UnsetType


class WireRequest(msgspec.Struct, kw_only=True):
    """Base of every request type: unknown fields are tolerated (and kept in ``body``)."""


class WireResponse(msgspec.Struct, kw_only=True):
    """Base of every response type.

    Optional fields default to ``UNSET``, which msgspec never writes; fields OpenAI always
    sends (``object``, ``finish_reason: null``) keep plain defaults and are always written,
    because the SDKs read them.
    """


T = TypeVar("T", bound=WireRequest)

_PATH = re.compile(r"at `\$\.?([^`]*)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")


def param_of(error: msgspec.ValidationError) -> str | None:
    """The request field a msgspec validation error is about (``messages[0].role``); for
    a missing field or an unknown one (types that forbid them), that field's path."""
    text = str(error)
    named = _MISSING.search(text) or _UNKNOWN.search(text)
    path = _PATH.search(text)
    prefix = path.group(1) if path else ""
    if named:
        return f"{prefix}.{named.group(1)}" if prefix else named.group(1)
    return prefix or None


class Envelope(Generic[T]):
    """A decoded request: the typed ``params`` and the client's JSON object ``body``."""

    __slots__ = ("body", "params")

    def __init__(self, params: T, body: dict[str, Any]) -> None:
        self.params = params
        self.body = body

    @property
    def model(self) -> str:
        return self.params.model  # type: ignore[attr-defined, no-any-return]

    def update(self, **fields: Any) -> None:
        """Set fields on the body (``UNSET`` removes one) and re-validate the typed view.

        Re-validating keeps ``params`` typed even when an extension supplies plain values
        (a persona's ``response_format`` dict), at the cost of one conversion: this is
        only used on the extension path.
        """
        for key, value in fields.items():
            if value is UNSET:
                self.body.pop(key, None)
            else:
                self.body[key] = msgspec.to_builtins(value)
        self.params = convert_request(self.body, type(self.params)).params

    def upstream_body(self, upstream_model: str) -> dict[str, Any]:
        """The body an OpenAI-compatible upstream receives: the client's, with its model id."""
        if self.body.get("model") == upstream_model:
            return self.body
        return {**self.body, "model": upstream_model}


_decode_object = msgspec.json.Decoder(dict[str, Any]).decode

#: The deepest nesting of arrays and objects a request body may have. Far beyond any
#: real request (a JSON schema 30 levels deep is about 60), and far below Python's
#: recursion limit, which the later steps (encoding for an upstream, grammar building,
#: chat templates) would otherwise meet with a deeply nested body.
MAX_JSON_DEPTH = 128


def _too_deep(body: dict[str, Any]) -> bool:
    """Whether ``body`` nests deeper than ``MAX_JSON_DEPTH`` (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(body, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value
        pending.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _nesting_error() -> InvalidRequest:
    return InvalidRequest(
        f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep."
    )


def decode_request(raw: bytes, request_type: type[T]) -> Envelope[T]:
    """Decode and validate a JSON request body, raising ``InvalidRequest`` naming the field."""
    if not raw:
        raise InvalidRequest("The request body is empty; a JSON object is required.")
    try:
        body = _decode_object(raw)
    except msgspec.ValidationError:
        raise InvalidRequest("The request body must be a JSON object.") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    except RecursionError:  # msgspec stops at Python's recursion limit (very deep nesting)
        raise _nesting_error() from None
    # Nesting needs one bracket per level: only a body with many can be too deep.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _too_deep(body):
        raise _nesting_error()
    return convert_request(body, request_type)


def validated(body: dict[str, Any], request_type: type[T], *, strict: bool = True) -> T:
    """``body`` as ``request_type``, or ``InvalidRequest`` naming the offending field.

    ``strict=False`` accepts strings for numbers and booleans, as multipart forms send them.
    """
    try:
        return msgspec.convert(body, request_type, strict=strict, str_keys=True)
    except msgspec.ValidationError as exc:
        message = shown_quoted(str(exc))
        raise InvalidRequest(f"Invalid request: {message}", param=param_of(exc)) from None


def convert_request(body: dict[str, Any], request_type: type[T]) -> Envelope[T]:
    return Envelope(validated(body, request_type), body)


class NativeRequest(WireRequest):
    """A request in a dialect's own format, passed through to an upstream that speaks it
    (``DeploymentConfig.native``): only the fields the gateway itself reads are typed."""

    model: str
    stream: bool | None = False
