"""Fill-in-the-middle for ``/v1/completions`` with ``suffix``: the text between two.

A model whose vocabulary has FIM tokens (declared in the GGUF, or named by the ``fim``
config entry) gets the layout it was trained on, ``<PRE> prefix <SUF> suffix <MID>``.

A model without them, such as the bundled SmolLM2, gets a chat prompt instead: the
user turn shows the text after the gap, and the assistant turn is opened inside a code
block that already holds the text before the gap, so the model continues the prefix.
Generation stops where the model closes the block, or where it starts to write the
beginning of the suffix again; so the answer never contains the suffix, and it has the
shape of any other completion (nothing in it says which layout was used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import llama_cpp

from adapters.llamacpp.prompts import renderer_of, tokenize_prompt
from proxy.errors import InvalidRequest

if TYPE_CHECKING:
    from adapters.llamacpp.config import FimTokens

FENCE = "```"
INFILL_SYSTEM = (
    "You fill the gap in a file. The user shows the text that comes after the gap; the "
    "assistant continues the text before the gap up to where that text begins, writing "
    "only the missing part."
)
SUFFIX_STOP_MIN_CHARS = 8
"""The stop taken from the suffix spans whole lines until it has this many characters,
so a suffix that starts with ``}`` does not cut every closing brace of the answer."""
SUFFIX_STOP_MAX_CHARS = 200


def fim_token_ids(llm: Any, configured: FimTokens | None) -> tuple[int, int, int] | None:
    """The model's (prefix, suffix, middle) FIM token ids, or None when it has none."""
    vocab = llm._model.vocab
    ids = (
        llama_cpp.llama_vocab_fim_pre(vocab),
        llama_cpp.llama_vocab_fim_suf(vocab),
        llama_cpp.llama_vocab_fim_mid(vocab),
    )
    if all(i >= 0 for i in ids):
        return ids
    if configured is None:
        return None
    found = []
    for role, text in (
        ("prefix", configured.prefix),
        ("suffix", configured.suffix),
        ("middle", configured.middle),
    ):
        tokens = llm.tokenize(text.encode(), add_bos=False, special=True)
        if len(tokens) != 1:
            raise InvalidRequest(
                f"The configured fim.{role} '{text}' is not a single token of this model.",
                param="suffix",
            )
        found.append(tokens[0])
    return found[0], found[1], found[2]


def fim_prompt(llm: Any, ids: tuple[int, int, int], prefix: str, suffix: str) -> list[int]:
    """``[BOS] <PRE> prefix <SUF> suffix <MID>``: the model writes what goes between."""
    pre, suf, mid = ids
    tokens = [pre, *llm.tokenize(prefix.encode(), add_bos=False, special=False)]
    tokens += [suf, *llm.tokenize(suffix.encode(), add_bos=False, special=False), mid]
    bos = llm.token_bos()
    if llm._model.add_bos_token() and bos >= 0:
        tokens.insert(0, bos)
    return tokens


def infill_chat_prompt(llm: Any, chat_format: str | None, prefix: str, suffix: str) -> list[int]:
    """The chat-template layout for a model without FIM tokens (see the module doc)."""
    messages = [
        {"role": "system", "content": INFILL_SYSTEM},
        {"role": "user", "content": f"Text after the gap:\n{FENCE}\n{suffix}\n{FENCE}"},
    ]
    opened = renderer_of(llm, chat_format).render(messages, add_generation_prompt=True)
    answer = f"{FENCE}\n{prefix}".encode()  # the file's text: no special tokens parsed in it
    return tokenize_prompt(llm, opened) + list(llm.tokenize(answer, add_bos=False, special=False))


def suffix_stop(suffix: str) -> str | None:
    """Where the suffix's own text begins: its first lines, leading blank space left out.

    A substring of the suffix, so output cut before it cannot contain the suffix.
    """
    text = suffix.lstrip()
    end = 0
    while True:
        newline = text.find("\n", end)
        if newline < 0:
            head = text.rstrip()
            break
        head = text[:newline].rstrip()
        if len(head) >= SUFFIX_STOP_MIN_CHARS:
            break
        end = newline + 1
    return head[:SUFFIX_STOP_MAX_CHARS] or None


def infill_stops(suffix: str) -> list[str]:
    """Stops for the chat-template layout: the code block's end, the suffix's start."""
    stop = suffix_stop(suffix)
    return [FENCE] if stop is None else [FENCE, stop]
