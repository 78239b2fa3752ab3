"""JSON-schema -> GBNF that can only produce valid JSON strings.

llama-cpp-python's ``SchemaConverter`` (a copy of an older llama.cpp converter) lets a
string hold any character but ``"`` and ``\\``: its ``char`` rule is ``[^"\\]``, so a
model may write a raw newline or tab inside a string, which JSON forbids (strict
parsers such as ``json.loads`` and pydantic refuse it). llama.cpp's own converter now
excludes ``\\x00-\\x1F`` and ``\\x7F``. The converter is kept (it is the maintained one
that ships with the bindings) and its output is made safe here, rule by rule:

- every negated character class also excludes the control characters, ``"`` and
  ``\\`` (negated classes only occur inside strings: ``char``, and the ``.`` and
  ``[^...]`` of a ``pattern``, where a raw quote would end the string early);
- a positive character class loses its control characters, which come back as their
  JSON escapes (a ``pattern`` such as ``[a-z\\n]`` matches the decoded string);
- a control character in a literal (a ``pattern`` with ``\\n``) is written as its escape;
- constant strings are escaped for GBNF completely (the bundled converter does not
  escape backslashes, so a constant holding ``\\n`` became a raw newline).

Rules added with ``add_wrapper_rule`` (the ``<tool_call>`` frame around the JSON) are
kept as written: they are not JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llama_cpp.llama_grammar import SchemaConverter

#: Code points JSON does not allow raw inside a string, as inclusive ranges.
CONTROL_RANGES = ((0x00, 0x1F), (0x7F, 0x7F))

_SIMPLE_ESCAPES = {"t": 0x09, "r": 0x0D, "n": 0x0A, "\\": 0x5C, '"': 0x22, "[": 0x5B, "]": 0x5D}
_HEX_LENGTHS = {"x": 2, "u": 4, "U": 8}
_LITERAL_ESCAPE = re.compile(r'[\r\n"\\]')
_LITERAL_ESCAPES = {"\r": "\\r", "\n": "\\n", '"': '\\"', "\\": "\\\\"}


def is_control(code: int) -> bool:
    return any(low <= code <= high for low, high in CONTROL_RANGES)


def _read_char(body: str, at: int) -> tuple[int, int]:
    """One (possibly escaped) GBNF character at ``at``: its code point and the next index."""
    if body[at] != "\\":
        return ord(body[at]), at + 1
    kind = body[at + 1]
    if kind in _HEX_LENGTHS:
        end = at + 2 + _HEX_LENGTHS[kind]
        return int(body[at + 2 : end], 16), end
    return _SIMPLE_ESCAPES[kind], at + 2


def _class_char(code: int) -> str:
    if 0x20 <= code < 0x7F and chr(code) not in '\\"[]-^':
        return chr(code)
    if code <= 0xFF:
        return f"\\x{code:02X}"
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def _literal(text: str) -> str:
    return '"' + _LITERAL_ESCAPE.sub(lambda m: _LITERAL_ESCAPES[m.group(0)], text) + '"'


def _json_escape(code: int) -> str:
    """The escape a JSON string uses for a control character (``\\n``, ``\\u0001``)."""
    return json.dumps(chr(code))[1:-1]


def _subtract_controls(ranges: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[int]]:
    kept: list[tuple[int, int]] = []
    removed: list[int] = []
    for low, high in ranges:
        pieces = [(low, high)]
        for c_low, c_high in CONTROL_RANGES:
            next_pieces = []
            for p_low, p_high in pieces:
                removed.extend(range(max(p_low, c_low), min(p_high, c_high) + 1))
                if p_low < c_low:
                    next_pieces.append((p_low, min(p_high, c_low - 1)))
                if p_high > c_high:
                    next_pieces.append((max(p_low, c_high + 1), p_high))
            pieces = next_pieces
        kept.extend(pieces)
    return kept, sorted(set(removed))


def _safe_class(body: str, at: int) -> tuple[str, int]:
    """The class starting at ``body[at] == "["``, made JSON-safe; and the index after it."""
    i = at + 1
    negated = body[i] == "^"
    i += negated
    ranges: list[tuple[int, int]] = []
    while body[i] != "]":
        low, i = _read_char(body, i)
        high = low
        if body[i] == "-" and body[i + 1] != "]":
            high, i = _read_char(body, i + 1)
        ranges.append((low, high))
    end = i + 1
    if negated:
        for extra in (*CONTROL_RANGES, (0x22, 0x22), (0x5C, 0x5C)):
            if extra not in ranges:
                ranges.append(extra)
        items = "".join(_range_text(low, high) for low, high in ranges)
        return f"[^{items}]", end
    kept, removed = _subtract_controls(ranges)
    alternatives = [_literal(_json_escape(code)) for code in removed]
    if kept:
        alternatives.insert(0, "[" + "".join(_range_text(low, high) for low, high in kept) + "]")
    if not removed:
        return alternatives[0], end
    return "(" + " | ".join(alternatives) + ")", end


def _range_text(low: int, high: int) -> str:
    return _class_char(low) if low == high else f"{_class_char(low)}-{_class_char(high)}"


def _safe_literal(body: str, at: int) -> tuple[str, int]:
    """The literal starting at ``body[at] == '"'``, its control characters JSON-escaped."""
    i = at + 1
    text = []
    while body[i] != '"':
        code, i = _read_char(body, i)
        text.append(_json_escape(code) if is_control(code) else chr(code))
    return _literal("".join(text)), i + 1


def json_safe_rule(body: str) -> str:
    """A GBNF rule body whose strings can hold no raw control character."""
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == '"':
            piece, i = _safe_literal(body, i)
        elif ch == "[":
            piece, i = _safe_class(body, i)
        else:
            piece, i = ch, i + 1
        out.append(piece)
    return "".join(out)


class JsonSchemaGrammar(SchemaConverter):  # type: ignore[misc]
    """llama-cpp-python's converter, with JSON-safe strings (see the module docstring)."""

    def __init__(self, prop_order: dict[str, int] | None = None) -> None:
        super().__init__(
            prop_order=prop_order or {}, allow_fetch=False, dotall=False, raw_pattern=False
        )
        self._wrapper_rules: dict[str, str] = {}

    def _format_literal(self, literal: str) -> str:
        return _literal(literal)

    def add_wrapper_rule(self, name: str, body: str) -> str:
        """A rule outside the JSON (kept as written); returns its name."""
        self._wrapper_rules[name] = body
        return name

    def convert(self, schema: dict[str, Any], name: str) -> str:
        """The rule (a name or an expression) matching JSON values of ``schema``."""
        resolved = self.resolve_refs(json.loads(json.dumps(schema)), name)
        return str(self.visit(resolved, name))

    def format_grammar(self) -> str:
        rules = {name: json_safe_rule(body) for name, body in self._rules.items()}
        rules.update(self._wrapper_rules)
        return "\n".join(f"{name} ::= {body}" for name, body in sorted(rules.items()))
