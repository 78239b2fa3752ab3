"""Tokenizer endpoints on a local model: the exact ids the model would read.

Chat messages are counted as the chat request would be: template rendered, tools
described, BOS added, so a client can budget its context against ``max_model_len``.
Tokenizing needs only the vocabulary, which is read-only once loaded, so it runs on a
thread beside a generation instead of queueing behind it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from adapters.llamacpp.chat import chat_prompt_tokens
from proxy.errors import InvalidRequest
from proxy.schemas.base import UNSET, Envelope
from proxy.schemas.chat import ChatCompletionRequest
from proxy.schemas.tokenize import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenCountResponse,
    TokenizeRequest,
    TokenizeResponse,
)

if TYPE_CHECKING:
    from adapters.llamacpp import LlamaCppAdapter


def tokens_of(adapter: LlamaCppAdapter, llm: Any, params: TokenizeRequest) -> list[int]:
    has_prompt, has_messages = params.prompt is not UNSET, params.messages is not UNSET
    if has_prompt == has_messages:
        raise InvalidRequest("Send exactly one of 'prompt' and 'messages'.", param="prompt")
    if has_prompt:
        text = str(params.prompt)
        return list(llm.tokenize(text.encode(), add_bos=params.add_special_tokens, special=True))
    chat = ChatCompletionRequest(
        model=params.model,
        messages=params.messages,  # type: ignore[arg-type]
        tools=params.tools,
        tool_choice=params.tool_choice,
    )
    tokens, _ = chat_prompt_tokens(
        llm, adapter.cfg.chat_format, chat, add_generation_prompt=params.add_generation_prompt
    )
    return tokens


async def tokenize(
    adapter: LlamaCppAdapter, envelope: Envelope[TokenizeRequest]
) -> TokenizeResponse:
    async with adapter.manager.use(adapter.slot) as llm:
        tokens = await asyncio.to_thread(tokens_of, adapter, llm, envelope.params)
        return TokenizeResponse(tokens=tokens, count=len(tokens), max_model_len=llm.n_ctx())


async def count_tokens(
    adapter: LlamaCppAdapter, envelope: Envelope[TokenizeRequest]
) -> TokenCountResponse:
    async with adapter.manager.use(adapter.slot) as llm:
        tokens = await asyncio.to_thread(tokens_of, adapter, llm, envelope.params)
        return TokenCountResponse(count=len(tokens), max_model_len=llm.n_ctx())


async def detokenize(
    adapter: LlamaCppAdapter, envelope: Envelope[DetokenizeRequest]
) -> DetokenizeResponse:
    tokens = envelope.params.tokens
    async with adapter.manager.use(adapter.slot) as llm:
        n_vocab = llm.n_vocab()
        bad = next((i for i, t in enumerate(tokens) if not 0 <= t < n_vocab), None)
        if bad is not None:
            raise InvalidRequest(
                f"tokens[{bad}] = {tokens[bad]} is outside the vocabulary (0..{n_vocab - 1}).",
                param="tokens",
            )
        data = await asyncio.to_thread(llm.detokenize, tokens, None, True)
        return DetokenizeResponse(prompt=data.decode("utf-8", errors="replace"))


async def count_text(adapter: LlamaCppAdapter, text: str) -> int:
    async with adapter.manager.use(adapter.slot) as llm:
        tokens = await asyncio.to_thread(llm.tokenize, text.encode(), False, False)
        return len(tokens)
