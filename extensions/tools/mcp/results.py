"""An MCP ``CallToolResult`` as the text of the ``tool`` message the model reads.

- Text blocks are the result, joined by blank lines; the text of embedded text
  resources too. Images, audio and binary resources cannot be put in a tool message
  as text: each is named (``[image: image/png, 1234 bytes]``) so the model knows it
  was there. A resource link is given as its URI.
- ``structuredContent`` is used when no block carries text (servers that send both
  put the same JSON in a text block, as the spec asks of them), as compact JSON.
- ``isError``: the text becomes ``error: <text>``, the tool loop's convention for a
  failed call (counted as an error, and read as one by the model).
- Longer than ``max_chars``: cut, and marked as cut.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from extensions.tools.base import error_text


def _size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except (binascii.Error, ValueError):
        return len(data)


def _block_text(block: Any) -> str | None:
    kind = getattr(block, "type", None)
    if kind == "text":
        return str(block.text)
    if kind in ("image", "audio"):
        return f"[{kind}: {block.mime_type}, {_size(block.data)} bytes]"
    if kind == "resource_link":
        return f"[resource: {block.uri}]"
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        if isinstance(text, str):
            return text
        mime = getattr(resource, "mime_type", None) or "application/octet-stream"
        return f"[resource: {resource.uri}, {mime}, {_size(getattr(resource, 'blob', ''))} bytes]"
    return None


def result_text(result: Any, max_chars: int) -> str:
    """The model's view of one ``CallToolResult``."""
    parts = [text for block in result.content or () if (text := _block_text(block)) is not None]
    has_text = any(getattr(block, "type", None) in ("text", "resource") for block in result.content)
    if not has_text and result.structured_content is not None:
        parts.insert(0, json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n\n".join(parts)
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n[cut: the result had {len(text)} characters]"
    if result.is_error:
        return error_text(text or "the tool reported an error without a message")
    return text or "(the tool returned nothing)"
