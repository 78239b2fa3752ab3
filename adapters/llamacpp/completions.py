"""Legacy ``/v1/completions``: raw prompts, several per request, echo, fill-in-the-middle.

With ``suffix`` the prompt is laid out for infilling (``infill``): with the model's FIM
tokens when it has them, else as a chat prompt that shows the text after the gap.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.base import CallStats
from adapters.llamacpp.engine import Finish, Sampling, TokenLogprob, generate
from adapters.llamacpp.infill import fim_prompt, fim_token_ids, infill_chat_prompt, infill_stops
from adapters.llamacpp.sampling import check_n, given, max_tokens_for, sampling_from, stop_list
from adapters.llamacpp.scheduler import call_job, stream_job
from proxy.errors import InvalidRequest
from proxy.schemas.base import Envelope
from proxy.schemas.chat import Usage
from proxy.schemas.completions import Completion, CompletionChoice, CompletionRequest

if TYPE_CHECKING:
    from adapters.llamacpp import LlamaCppAdapter
    from adapters.llamacpp.models import ModelSlot

DEFAULT_MAX_TOKENS = 16
"""OpenAI's default for legacy completions."""


@dataclass(slots=True)
class PromptJob:
    tokens: list[int]
    text: str
    max_tokens: int


@dataclass(slots=True)
class CompletionJob:
    prompts: list[PromptJob]
    sampling: Sampling
    stop: list[str]
    echo: bool


def _prompts(prompt: Any) -> list[str | list[int]]:
    if isinstance(prompt, str):
        return [prompt]
    if prompt and all(isinstance(p, int) for p in prompt):
        return [prompt]
    return list(prompt)


def prepare_completion(
    adapter: LlamaCppAdapter, llm: Any, envelope: Envelope[CompletionRequest]
) -> CompletionJob:
    params = envelope.params
    check_n(params.n)
    if given(params.best_of) and params.best_of != 1:
        raise InvalidRequest("Local models do not support 'best_of' > 1.", param="best_of")
    sampling = sampling_from(params, envelope.body, adapter.cfg, llm.n_vocab())
    logprobs = params.logprobs
    if isinstance(logprobs, int):
        if not 0 <= logprobs <= 5:
            raise InvalidRequest("'logprobs' must be between 0 and 5.", param="logprobs")
        sampling.logprobs = logprobs
    echo = params.echo is True
    if echo and sampling.logprobs is not None:
        raise InvalidRequest("'echo' together with 'logprobs' is not supported.", param="echo")
    suffix = params.suffix if isinstance(params.suffix, str) else None
    stop = stop_list(params.stop)
    fim = None
    if suffix is not None:
        fim = fim_token_ids(llm, adapter.cfg.fim)
        if fim is None and not suffix.strip():
            suffix = None  # nothing after the gap: a plain continuation is the infill
        elif fim is None:
            stop += infill_stops(suffix)
    prompts = _prompts(params.prompt)
    if not prompts:
        raise InvalidRequest("'prompt' must not be empty.", param="prompt")
    n_vocab, n_ctx = llm.n_vocab(), llm.n_ctx()
    limit = params.max_tokens if given(params.max_tokens) else DEFAULT_MAX_TOKENS
    jobs = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, str):
            text = prompt
        else:
            if any(not 0 <= t < n_vocab for t in prompt):
                raise InvalidRequest(
                    f"prompt[{i}] has a token id outside the vocabulary.", param="prompt"
                )
            text = llm.detokenize(prompt).decode("utf-8", errors="replace")
        if fim is not None:
            tokens = fim_prompt(llm, fim, text, suffix or "")
        elif suffix is not None:
            tokens = infill_chat_prompt(llm, adapter.cfg.chat_format, text, suffix)
        elif isinstance(prompt, str):
            tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
        else:
            tokens = list(prompt)
        if not tokens:
            bos = llm.token_bos()
            if bos < 0:
                raise InvalidRequest("'prompt' must not be empty.", param="prompt")
            tokens = [bos]
        jobs.append(
            PromptJob(
                tokens, text, max_tokens_for(limit, "max_tokens", len(tokens), n_ctx, "prompt")
            )
        )
    return CompletionJob(jobs, sampling, stop, echo)


class _Offsets:
    """Legacy ``logprobs`` objects, with text offsets running over one choice."""

    def __init__(self, start: int) -> None:
        self.offset = start

    def logprobs(self, entries: list[TokenLogprob]) -> dict[str, Any]:
        tokens, offsets = [], []
        for e in entries:
            text = e.token.decode("utf-8", errors="replace")
            tokens.append(text)
            offsets.append(self.offset)
            self.offset += len(text)
        return {
            "tokens": tokens,
            "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [
                {t.decode("utf-8", errors="replace"): lp for t, lp in e.top} for e in entries
            ],
            "text_offset": offsets,
        }


@dataclass(slots=True)
class _Choice:
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)


def _run(
    slot: ModelSlot, llm: Any, job: CompletionJob, index: int, emit: Any, cancelled: Any
) -> Finish:
    prompt = job.prompts[index]
    return slot.record(
        generate(
            llm,
            prompt.tokens,
            job.sampling,
            max_tokens=prompt.max_tokens,
            stop=job.stop,
            emit=emit,
            cancelled=cancelled,
        )
    )


def _usage(finishes: list[Finish]) -> Usage:
    prompt = sum(f.prompt_tokens for f in finishes)
    completion = sum(f.completion_tokens for f in finishes)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


async def complete(
    adapter: LlamaCppAdapter, envelope: Envelope[CompletionRequest], stats: CallStats
) -> Completion:
    started = time.perf_counter()
    slot = adapter.slot
    async with adapter.manager.use(slot) as llm:
        job = await asyncio.to_thread(prepare_completion, adapter, llm, envelope)
        choices = [_Choice() for _ in job.prompts]

        def work(cancelled: Any) -> list[Finish]:
            finishes = []
            for i, choice in enumerate(choices):

                def emit(
                    text: str, entries: list[TokenLogprob] | None, c: _Choice = choice
                ) -> None:
                    c.text.append(text)
                    if entries:
                        c.logprobs.extend(entries)

                finishes.append(_run(slot, llm, job, i, emit, cancelled))
            return finishes

        async with slot.queue.turn(adapter.config.name):
            finishes = await call_job(slot.executor, work)
    stats.upstream_s += time.perf_counter() - started
    usage = _usage(finishes)
    stats.add_usage(usage.prompt_tokens, usage.completion_tokens)
    out = []
    for i, (choice, finish) in enumerate(zip(choices, finishes, strict=True)):
        prefix = job.prompts[i].text if job.echo else ""
        logprobs = (
            _Offsets(0).logprobs(choice.logprobs) if job.sampling.logprobs is not None else None
        )
        text = prefix + "".join(choice.text)
        out.append(
            CompletionChoice(index=i, text=text, finish_reason=finish.reason, logprobs=logprobs)
        )
    return Completion(
        id=f"cmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=adapter.config.name,
        choices=out,
        usage=usage,
    )


async def complete_stream(
    adapter: LlamaCppAdapter, envelope: Envelope[CompletionRequest], stats: CallStats
) -> AsyncIterator[Completion]:
    adapter.check_file()
    started = time.perf_counter()
    slot, name = adapter.slot, adapter.config.name
    ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(index: int, text: str, finish: str | None = None, logprobs: Any = None) -> Completion:
        choice = CompletionChoice(index=index, text=text, finish_reason=finish, logprobs=logprobs)
        return Completion(id=ident, created=created, model=name, choices=[choice])

    finishes: list[Finish] = []
    async with adapter.manager.use(slot) as llm:
        job = await asyncio.to_thread(prepare_completion, adapter, llm, envelope)
        with_logprobs = job.sampling.logprobs is not None

        def work(channel: Any) -> None:
            for i in range(len(job.prompts)):

                def emit(text: str, entries: Any, i: int = i) -> None:
                    channel.put((i, text, entries))

                channel.put((i, _run(slot, llm, job, i, emit, channel.cancelled)))
                if channel.cancelled.is_set():
                    return

        async with slot.queue.turn(name):
            stats.upstream_s += time.perf_counter() - started
            offsets = [_Offsets(0) for _ in job.prompts]
            async with aclosing(stream_job(slot.executor, work)) as items:
                started_prompt = -1
                async for item in items:
                    index = item[0]
                    if index != started_prompt and job.echo:
                        started_prompt = index
                        yield chunk(index, job.prompts[index].text)
                    if isinstance(item[1], Finish):
                        finishes.append(item[1])
                        yield chunk(index, "", item[1].reason)
                        continue
                    if stats.first_token_s is None:
                        stats.first_token_s = time.perf_counter() - started
                    logprobs = offsets[index].logprobs(item[2] or []) if with_logprobs else None
                    yield chunk(index, item[1], logprobs=logprobs)
    usage = _usage(finishes)
    stats.add_usage(usage.prompt_tokens, usage.completion_tokens)
    if envelope.params.wants_usage_chunk:
        yield Completion(id=ident, created=created, model=name, choices=[], usage=usage)
