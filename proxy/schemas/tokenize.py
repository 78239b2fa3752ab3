"""Tokenizer endpoints: ``POST /v1/tokenize``, ``/v1/detokenize``, ``/v1/tokens/count``.

For clients that budget their context. The shapes follow vLLM's tokenizer API: a
``prompt`` string, or chat ``messages`` (plus ``tools``) counted as the model's chat
template renders them, which is what the model actually reads.
"""

from __future__ import annotations

from typing import Any

from proxy.schemas.base import UNSET, UnsetType, WireRequest, WireResponse
from proxy.schemas.chat import ChatMessage, Tool


class TokenizeRequest(WireRequest):
    model: str
    prompt: str | UnsetType = UNSET
    """Plain text; or send ``messages`` instead."""
    messages: list[ChatMessage] | UnsetType = UNSET
    tools: list[Tool] | UnsetType | None = UNSET
    tool_choice: str | dict[str, Any] | UnsetType | None = UNSET
    add_special_tokens: bool = True
    """With ``prompt``: add the model's BOS/EOS as it does for a completion."""
    add_generation_prompt: bool = True
    """With ``messages``: end with the assistant turn's opening, as a chat request does."""


class TokenizeResponse(WireResponse):
    tokens: list[int]
    count: int
    max_model_len: int | UnsetType = UNSET


class DetokenizeRequest(WireRequest):
    model: str
    tokens: list[int]


class DetokenizeResponse(WireResponse):
    prompt: str


class TokenCountResponse(WireResponse):
    count: int
    max_model_len: int | UnsetType = UNSET
