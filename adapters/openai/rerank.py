"""Reading an upstream's ``/rerank`` answer without re-encoding it.

Rerank servers agree on ``results: [{index, relevance_score, document?}]`` and differ
on where usage is: Jina (and llama-server, vLLM) send ``usage: {total_tokens,
prompt_tokens?}``, Cohere sends ``meta: {billed_units: {search_units, input_tokens?}}``.
The answer is decoded only far enough to check its results and read tokens from either.
"""

from __future__ import annotations

import msgspec

from adapters.base import CallStats
from proxy.errors import UpstreamError


class _Result(msgspec.Struct):
    index: int
    relevance_score: float


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    total_tokens: int | None = None


class _BilledUnits(msgspec.Struct):
    input_tokens: float | None = None


class _Meta(msgspec.Struct):
    billed_units: _BilledUnits | None = None


class _RerankProbe(msgspec.Struct):
    results: list[_Result]
    usage: _Usage | None = None
    meta: _Meta | None = None


_decode = msgspec.json.Decoder(_RerankProbe).decode


def rerank_tokens(probe: _RerankProbe) -> int:
    """The prompt tokens an answer reports: Jina's ``usage`` first, then Cohere's
    ``meta.billed_units.input_tokens``; 0 when it reports none."""
    if probe.usage is not None:
        tokens = probe.usage.prompt_tokens or probe.usage.total_tokens
        if tokens:
            return tokens
    billed = probe.meta.billed_units if probe.meta is not None else None
    if billed is not None and billed.input_tokens:
        return int(billed.input_tokens)
    return 0


def check_rerank_body(content: bytes, stats: CallStats, model: str) -> None:
    """Refuse an answer without valid ``results`` (a 502), and note its usage."""
    try:
        probe = _decode(content)
    except (msgspec.MsgspecError, RecursionError):
        raise UpstreamError(
            f"The upstream of '{model}' answered /rerank with no valid 'results' list."
        ) from None
    stats.add_usage(rerank_tokens(probe), 0)
