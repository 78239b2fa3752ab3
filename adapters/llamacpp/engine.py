"""The token loop: prefill (reusing the cached prefix), sample, stop, detokenize.

Runs on a model's worker thread. Sampling is a llama.cpp sampler chain built per
request (logit bias, penalties, grammar, then greedy or top-k/top-p/min-p/temperature
with a seeded distribution), so every parameter is applied in C, not in Python.
Text is produced incrementally: bytes are decoded as UTF-8 only when complete, and text
that could be the start of a stop sequence is held back until it is known not to be.
"""

from __future__ import annotations

import codecs
import ctypes
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaSampler

from proxy.errors import InvalidRequest


@dataclass(slots=True)
class Sampling:
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    grammar: str | None = None
    #: With a grammar: apply it only once the output contains this text (tool_choice auto).
    trigger: str | None = None
    #: None: no logprobs; 0: the chosen token's only; n: also the n most likely.
    logprobs: int | None = None


@dataclass(slots=True)
class TokenLogprob:
    token: bytes
    logprob: float
    top: list[tuple[bytes, float]]


@dataclass(slots=True)
class Finish:
    reason: str
    """``stop``, ``length`` or ``cancelled``."""
    prompt_tokens: int
    completion_tokens: int
    stop_sequence: str | None = None
    """The stop sequence that ended the output, when one did."""


#: Receives each piece of text; returning True ends the generation there (reason ``stop``).
Emit = Callable[[str, list[TokenLogprob] | None], bool | None]


def _add(chain: LlamaSampler, sampler: Any, what: str) -> None:
    if not sampler:
        raise InvalidRequest(f"llama.cpp rejected the {what} grammar.", param="response_format")
    llama_cpp.llama_sampler_chain_add(chain.sampler, sampler)


def build_sampler(llm: Any, s: Sampling) -> LlamaSampler:
    chain = LlamaSampler()
    n_vocab = llm.n_vocab()
    if s.logit_bias:
        chain.add_logit_bias(n_vocab, s.logit_bias)
    if s.repeat_penalty != 1.0 or s.presence_penalty or s.frequency_penalty:
        chain.add_penalties(n_vocab, 64, s.repeat_penalty, s.frequency_penalty, s.presence_penalty)
    if s.grammar is not None:
        vocab = llm._model.vocab
        text, root = s.grammar.encode(), b"root"
        if s.trigger is None:
            _add(chain, llama_cpp.llama_sampler_init_grammar(vocab, text, root), "output")
        else:
            pattern = f"[\\s\\S]*?({s.trigger})[\\s\\S]*".encode()
            patterns = (ctypes.c_char_p * 1)(pattern)
            tokens = (llama_cpp.llama_token * 0)()
            lazy = llama_cpp.llama_sampler_init_grammar_lazy_patterns(
                vocab, text, root, patterns, 1, tokens, 0
            )
            _add(chain, lazy, "tool")
    if s.temperature <= 0:
        chain.add_greedy()
    else:
        seed = s.seed if s.seed is not None else random.getrandbits(32)
        if s.top_k > 0:
            chain.add_top_k(s.top_k)
        chain.add_top_p(s.top_p, 1)
        chain.add_min_p(s.min_p, 1)
        chain.add_temp(s.temperature)
        chain.add_dist(seed & 0xFFFFFFFF)
    return chain


class Pieces:
    """Token bytes, cached per token id (``token_to_piece`` is a C call per token)."""

    def __init__(self, llm: Any) -> None:
        self._vocab = llm._model.vocab
        self._cache: dict[int, bytes] = {}
        self._buffer = ctypes.create_string_buffer(256)

    def __call__(self, token: int) -> bytes:
        piece = self._cache.get(token)
        if piece is None:
            n = llama_cpp.llama_token_to_piece(self._vocab, token, self._buffer, 256, 0, False)
            piece = self._cache[token] = self._buffer.raw[: max(0, n)]
        return piece


def pieces_of(llm: Any) -> Pieces:
    cached = getattr(llm, "_switchyard_pieces", None)
    if cached is None:
        cached = Pieces(llm)
        llm._switchyard_pieces = cached
    return cached  # type: ignore[no-any-return]


class TextStream:
    """Bytes in, text out; holds back text that may begin a stop sequence."""

    def __init__(self, stop: list[str]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._stop = [s for s in stop if s]
        self._held = ""
        self.matched: str | None = None
        """The stop sequence found (the earliest in the text), once one is."""

    def push(self, data: bytes) -> tuple[str, bool]:
        """Text now safe to emit, and whether a stop sequence ended the output."""
        text = self._held + self._decoder.decode(data)
        if not self._stop:
            self._held = ""
            return text, False
        found = [(i, s) for s in self._stop if (i := text.find(s)) >= 0]
        if found:
            cut, self.matched = min(found, key=lambda f: (f[0], -len(f[1])))
            self._held = ""
            return text[:cut], True
        keep = 0
        for s in self._stop:
            for k in range(min(len(s) - 1, len(text)), keep, -1):
                if text.endswith(s[:k]):
                    keep = k
                    break
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        text = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return text


def token_logprob(llm: Any, pieces: Pieces, token: int, top: int) -> TokenLogprob:
    """Log-probability of ``token`` under the model's raw distribution at this step."""
    n_vocab = llm.n_vocab()
    pointer = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    logits = np.ctypeslib.as_array(pointer, shape=(n_vocab,))
    peak = float(logits.max())
    norm = peak + float(np.log(np.exp(logits - peak).sum()))
    best: list[tuple[bytes, float]] = []
    if top > 0:
        ids = np.argpartition(-logits, top)[:top]
        ids = ids[np.argsort(-logits[ids])]
        best = [(pieces(int(i)), float(logits[i]) - norm) for i in ids]
    return TokenLogprob(pieces(token), float(logits[token]) - norm, best)


def prefill(llm: Any, tokens: list[int], cancelled: threading.Event, *, reuse: bool) -> bool:
    """Evaluate the prompt, keeping the longest cached prefix; False when cancelled.

    The last prompt token is always evaluated again so its logits are fresh. With
    ``reuse`` off (seeded requests) the prompt is evaluated from scratch: batch
    boundaries change float rounding, and a seed promises the same output.
    """
    common = 0
    if reuse and llm.n_tokens:
        limit = min(llm.n_tokens, len(tokens) - 1)
        cached = llm.input_ids[:limit]
        differ = np.nonzero(cached != np.asarray(tokens[:limit], dtype=cached.dtype))[0]
        common = int(differ[0]) if len(differ) else limit
    if common and llm._ctx.kv_cache_seq_rm(-1, common, -1):
        llm.n_tokens = common
    else:
        llm.reset()
        common = 0
    step = llm.n_batch
    for start in range(common, len(tokens), step):
        if cancelled.is_set():
            return False
        llm.eval(tokens[start : start + step])
    return True


def generate(
    llm: Any,
    prompt: list[int],
    sampling: Sampling,
    *,
    max_tokens: int,
    stop: list[str],
    emit: Emit,
    cancelled: threading.Event,
) -> Finish:
    """Generate up to ``max_tokens`` after ``prompt``, calling ``emit`` with text pieces."""
    pieces = pieces_of(llm)
    vocab = llm._model.vocab
    is_eog = llama_cpp.llama_vocab_is_eog
    text = TextStream(stop)
    logprobs = sampling.logprobs
    pending: list[TokenLogprob] = []
    sampler = build_sampler(llm, sampling)
    produced = 0
    reason = "length"
    hit_stop = False
    try:
        if not prefill(llm, prompt, cancelled, reuse=sampling.seed is None):
            return Finish("cancelled", len(prompt), 0)
        ctx = llm._ctx
        while produced < max_tokens:
            if cancelled.is_set():
                reason = "cancelled"
                break
            token = sampler.sample(ctx, -1)
            if is_eog(vocab, token):
                reason = "stop"
                break
            produced += 1
            if logprobs is not None:
                pending.append(token_logprob(llm, pieces, token, logprobs))
            out, hit_stop = text.push(pieces(token))
            if out:
                if emit(out, pending if logprobs is not None else None):
                    hit_stop = True
                pending = []
            if hit_stop:
                reason = "stop"
                break
            if produced < max_tokens:
                llm.eval([token])
        if not hit_stop and reason != "cancelled":
            tail = text.flush()
            if tail:
                emit(tail, pending if logprobs is not None else None)
    finally:
        sampler.close()
    return Finish(reason, len(prompt), produced, text.matched)
