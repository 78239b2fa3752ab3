"""Legacy completions: ``POST /v1/completions`` (IDE autocompletion, fill-in-the-middle)."""

from __future__ import annotations

from typing import Any, Literal

from proxy.schemas.base import UNSET, UnsetType, WireRequest, WireResponse
from proxy.schemas.chat import StreamOptions, Usage

# msgspec allows one array-like type per union, so the four OpenAI shapes (a string,
# strings, one token array, token arrays) are one list whose items may be any of them.
Prompt = str | list[str | int | list[int]]


class CompletionRequest(WireRequest):
    model: str
    prompt: Prompt = "<|endoftext|>"
    suffix: str | UnsetType | None = UNSET
    max_tokens: int | UnsetType | None = UNSET
    temperature: float | UnsetType | None = UNSET
    top_p: float | UnsetType | None = UNSET
    n: int | UnsetType | None = UNSET
    stream: bool | None = False
    stream_options: StreamOptions | UnsetType | None = UNSET
    logprobs: int | UnsetType | None = UNSET
    echo: bool | UnsetType | None = UNSET
    stop: str | list[str] | UnsetType | None = UNSET
    presence_penalty: float | UnsetType | None = UNSET
    frequency_penalty: float | UnsetType | None = UNSET
    best_of: int | UnsetType | None = UNSET
    logit_bias: dict[str, float] | UnsetType | None = UNSET
    seed: int | UnsetType | None = UNSET
    user: str | UnsetType = UNSET

    @property
    def wants_usage_chunk(self) -> bool:
        options = self.stream_options
        return isinstance(options, StreamOptions) and bool(options.include_usage)


class CompletionChoice(WireResponse):
    index: int
    text: str
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None


class Completion(WireResponse):
    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    object: Literal["text_completion"] = "text_completion"
    usage: Usage | UnsetType | None = UNSET
    system_fingerprint: str | UnsetType | None = UNSET
