"""``/v1/chat/completions`` on a local model, streamed and not.

A request is prepared (template rendered, tokens counted, limits checked) before it
joins the model's queue, so a prompt that cannot fit is a 400 without waiting. The
stream's first chunk (the assistant role) goes out when the request's turn comes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters.base import CallStats
from adapters.llamacpp.engine import Finish, Sampling, TokenLogprob, generate
from adapters.llamacpp.prompts import renderer_of, to_template_messages, tokenize_prompt
from adapters.llamacpp.sampling import check_n, given, max_tokens_for, sampling_from, stop_list
from adapters.llamacpp.scheduler import call_job, stream_job
from adapters.llamacpp.tools import Events, OutputPlan, ToolCallParser, plan_output
from proxy.errors import InvalidRequest, SwitchyardError
from proxy.schemas.base import UNSET, Envelope
from proxy.schemas.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    ToolCall,
    ToolCallDelta,
    ToolCallFunction,
    Usage,
)

if TYPE_CHECKING:
    from adapters.llamacpp import LlamaCppAdapter
    from adapters.llamacpp.models import ModelSlot


#: Receives each piece of text, its logprobs, and (when tools are parsed) its events.
Output = Callable[[str, list[TokenLogprob] | None, Events | None], None]


@dataclass(slots=True)
class ChatJob:
    tokens: list[int]
    sampling: Sampling
    max_tokens: int
    stop: list[str]
    plan: OutputPlan
    parser: ToolCallParser | None = None

    def run(self, slot: ModelSlot, llm: Any, output: Output, cancelled: Any) -> Finish:
        """Generate on the worker thread, recording how it ended on the slot.

        Tool calls are parsed here, token by token, so that the generation stops as
        soon as the model repeats a call it already made (see ``tool_parser``).
        """
        parser = self.parser

        def emit(text: str, entries: list[TokenLogprob] | None) -> bool:
            if parser is None:
                output(text, entries, None)
                return False
            output(text, entries, parser.feed(text))
            return parser.repeated

        finish = generate(
            llm,
            self.tokens,
            self.sampling,
            max_tokens=self.max_tokens,
            stop=self.stop,
            emit=emit,
            cancelled=cancelled,
        )
        if parser is not None:
            output("", None, parser.finish())
        return slot.record(finish)


def chat_prompt_tokens(
    llm: Any, chat_format: str | None, params: Any, *, add_generation_prompt: bool = True
) -> tuple[list[int], OutputPlan]:
    """The prompt tokens of a message list, tools included, as the template renders it."""
    plan = plan_output(params)
    messages = to_template_messages(params.messages, plan.system_text)
    text = renderer_of(llm, chat_format).render(
        messages, add_generation_prompt=add_generation_prompt
    )
    return tokenize_prompt(llm, text), plan


def prepare_chat(
    adapter: LlamaCppAdapter, llm: Any, envelope: Envelope[ChatCompletionRequest]
) -> ChatJob:
    """Validate and tokenize a request (on a thread: rendering and tokenizing take time)."""
    params = envelope.params
    check_n(params.n)
    if not params.messages:
        raise InvalidRequest("'messages' must not be empty.", param="messages")
    sampling = sampling_from(params, envelope.body, adapter.cfg, llm.n_vocab())
    if params.logprobs is True:
        top = params.top_logprobs if given(params.top_logprobs) else 0
        if not isinstance(top, int) or not 0 <= top <= 20:
            raise InvalidRequest("'top_logprobs' must be between 0 and 20.", param="top_logprobs")
        sampling.logprobs = top
    elif given(params.top_logprobs):
        raise InvalidRequest("'top_logprobs' requires 'logprobs': true.", param="top_logprobs")
    stop = stop_list(params.stop)
    tokens, plan = chat_prompt_tokens(llm, adapter.cfg.chat_format, params)
    sampling.grammar, sampling.trigger = plan.grammar, plan.trigger
    if given(params.max_completion_tokens):
        limit, name = params.max_completion_tokens, "max_completion_tokens"
    else:
        limit, name = params.max_tokens, "max_tokens"
    max_tokens = max_tokens_for(limit, name, len(tokens), llm.n_ctx(), "messages")
    if not given(limit) and adapter.cfg.default_max_tokens is not None:
        max_tokens = min(max_tokens, adapter.cfg.default_max_tokens)
    parser = ToolCallParser() if plan.parse_tools else None
    return ChatJob(tokens, sampling, max_tokens, stop, plan, parser)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def logprobs_content(entries: list[TokenLogprob]) -> list[dict[str, Any]]:
    return [
        {
            "token": _text(e.token),
            "logprob": e.logprob,
            "bytes": list(e.token),
            "top_logprobs": [
                {"token": _text(t), "logprob": lp, "bytes": list(t)} for t, lp in e.top
            ],
        }
        for e in entries
    ]


def _finish_reason(finish: Finish, parser: ToolCallParser | None) -> str:
    if finish.reason == "length":
        return "length"
    if parser is not None and any(c.complete for c in parser.calls):
        return "tool_calls"
    return "stop"


def _usage(finish: Finish) -> Usage:
    return Usage(
        prompt_tokens=finish.prompt_tokens,
        completion_tokens=finish.completion_tokens,
        total_tokens=finish.prompt_tokens + finish.completion_tokens,
    )


async def chat(
    adapter: LlamaCppAdapter, envelope: Envelope[ChatCompletionRequest], stats: CallStats
) -> ChatCompletion:
    started = time.perf_counter()
    slot, name = adapter.slot, adapter.config.name
    async with adapter.manager.use(slot) as llm:
        job = await asyncio.to_thread(prepare_chat, adapter, llm, envelope)
        async with slot.queue.turn(name):
            pieces: list[str] = []
            logprobs: list[TokenLogprob] = []

            def output(text: str, entries: list[TokenLogprob] | None, events: Any) -> None:
                pieces.append(text if events is None else events.content)
                if entries:
                    logprobs.extend(entries)

            def work(cancelled: Any) -> Finish:
                return job.run(slot, llm, output, cancelled)

            finish = await call_job(slot.executor, work)
    stats.upstream_s += time.perf_counter() - started
    stats.add_usage(finish.prompt_tokens, finish.completion_tokens)
    text = "".join(pieces)
    parser = job.parser
    calls = [
        ToolCall(id=c.id, function=ToolCallFunction(name=c.name, arguments=c.arguments))
        for c in (parser.calls if parser is not None else ())
    ]
    message = ResponseMessage(
        role="assistant",
        content=text if text or not calls else None,
        tool_calls=calls or UNSET,
    )
    choice = Choice(
        index=0,
        message=message,
        finish_reason=_finish_reason(finish, parser),
        stop_reason=finish.stop_sequence if finish.stop_sequence is not None else UNSET,
        logprobs={"content": logprobs_content(logprobs), "refusal": None}
        if job.sampling.logprobs is not None
        else None,
    )
    return ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=adapter.config.name,
        choices=[choice],
        usage=_usage(finish),
    )


class _Chunks:
    """Builds the chunks of one stream (same id, created and model on each)."""

    __slots__ = ("created", "id", "model")

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def chunk(
        self,
        delta: Delta,
        finish_reason: str | None = None,
        logprobs: Any = UNSET,
        stop_reason: str | None = None,
    ) -> ChatCompletionChunk:
        choice = ChunkChoice(
            index=0,
            delta=delta,
            finish_reason=finish_reason,
            logprobs=logprobs,
            stop_reason=UNSET if stop_reason is None else stop_reason,
        )
        return ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=[choice]
        )

    def events(self, events: Events) -> list[ChatCompletionChunk]:
        out = []
        if events.content:
            out.append(self.chunk(Delta(content=events.content)))
        for call in events.started:
            function = ToolCallFunction(name=call.name, arguments="")
            delta = ToolCallDelta(index=call.index, id=call.id, type="function", function=function)
            out.append(self.chunk(Delta(tool_calls=[delta])))
        for index, piece in events.arguments:
            delta = ToolCallDelta(index=index, function=ToolCallFunction(arguments=piece))
            out.append(self.chunk(Delta(tool_calls=[delta])))
        return out


async def chat_stream(
    adapter: LlamaCppAdapter, envelope: Envelope[ChatCompletionRequest], stats: CallStats
) -> AsyncIterator[ChatCompletionChunk]:
    adapter.check_file()
    started = time.perf_counter()
    slot, name = adapter.slot, adapter.config.name
    chunks = _Chunks(name)
    async with adapter.manager.use(slot) as llm:
        job = await asyncio.to_thread(prepare_chat, adapter, llm, envelope)
        async with slot.queue.turn(name):
            parser = job.parser
            with_logprobs = job.sampling.logprobs is not None
            stats.upstream_s += time.perf_counter() - started
            yield chunks.chunk(Delta(role="assistant", content=""))

            def work(channel: Any) -> None:
                def output(text: str, entries: list[TokenLogprob] | None, events: Any) -> None:
                    channel.put((text, entries, events))

                channel.put(job.run(slot, llm, output, channel.cancelled))

            finish: Finish | None = None
            async with aclosing(stream_job(slot.executor, work)) as items:
                async for item in items:
                    if isinstance(item, Finish):
                        finish = item
                        continue
                    text, entries, events = item
                    if stats.first_token_s is None:
                        stats.first_token_s = time.perf_counter() - started
                    if events is not None:
                        for chunk in chunks.events(events):
                            yield chunk
                        continue
                    logprobs = (
                        {"content": logprobs_content(entries or []), "refusal": None}
                        if with_logprobs
                        else UNSET
                    )
                    yield chunks.chunk(Delta(content=text), logprobs=logprobs)
    if finish is None:
        raise SwitchyardError("The local generation ended without finishing.")
    stats.add_usage(finish.prompt_tokens, finish.completion_tokens)
    yield chunks.chunk(
        Delta(), finish_reason=_finish_reason(finish, parser), stop_reason=finish.stop_sequence
    )
    if envelope.params.wants_usage_chunk:
        yield ChatCompletionChunk(
            id=chunks.id, created=chunks.created, model=name, choices=[], usage=_usage(finish)
        )
