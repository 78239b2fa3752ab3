"""A tiny BERT cross-encoder written as a GGUF here, so llama.cpp's rank pooling runs
for real without downloading a reranker.

Its weights are seeded random numbers: its scores mean nothing, but they are the
scores llama.cpp computes for this model (one per pair, from the classifier head), so a
test can check the path end to end: the model loads with ``pooling: rank``, pairs are
framed as ``[CLS] query [SEP] [SEP] document [SEP]`` (its vocabulary adds BOS, EOS and
SEP, EOS being ``[SEP]``, as XLM-R rerankers such as bge-reranker-v2-m3 do), several
pairs share a batch, and each score is the one the pair gets alone. The vocabulary is a
few whole words plus BERT's special tokens; the ``gguf`` package (llama.cpp's own
writer) writes the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = [
    "the", "a", "is", "of", "in", "paris", "france", "capital", "city", "tower",
    "eiffel", "where", "what", "banana", "yellow", "fruit", "river", "seine",
]  # fmt: skip
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)
N_EMBD, N_FF, N_HEAD, N_CTX = 16, 32, 2, 64


def write_tiny_reranker(path: Path, seed: int = 7) -> Path:
    import gguf

    rng = np.random.default_rng(seed)

    def weights(*shape: int, scale: float = 0.5) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    # whole words carry the phantom space that llama.cpp's WPM tokenizer looks them up by
    tokens = SPECIAL + ["\u2581" + word for word in WORDS]
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_name("tiny-reranker")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_feed_forward_length(N_FF)
    writer.add_block_count(1)
    writer.add_head_count(N_HEAD)
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.RANK)
    writer.add_classifier_output_labels(["relevant"])
    writer.add_tokenizer_model("bert")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * len(SPECIAL) + [1] * len(WORDS))
    writer.add_token_type_count(2)
    writer.add_bos_token_id(CLS)
    writer.add_sep_token_id(SEP)
    writer.add_eos_token_id(SEP)
    writer.add_pad_token_id(PAD)
    writer.add_unk_token_id(UNK)
    writer.add_mask_token_id(MASK)
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)
    writer.add_add_eos_token(True)

    ones = np.ones(N_EMBD, dtype=np.float32)
    zeros = np.zeros(N_EMBD, dtype=np.float32)
    writer.add_tensor("token_embd.weight", weights(len(tokens), N_EMBD))
    writer.add_tensor("token_types.weight", weights(2, N_EMBD))
    writer.add_tensor("position_embd.weight", weights(N_CTX, N_EMBD, scale=0.1))
    writer.add_tensor("token_embd_norm.weight", ones)
    writer.add_tensor("token_embd_norm.bias", zeros)
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        writer.add_tensor(f"blk.0.{name}.weight", weights(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.0.{name}.bias", weights(N_EMBD, scale=0.1))
    writer.add_tensor("blk.0.attn_output_norm.weight", ones)
    writer.add_tensor("blk.0.attn_output_norm.bias", zeros)
    writer.add_tensor("blk.0.ffn_up.weight", weights(N_FF, N_EMBD))
    writer.add_tensor("blk.0.ffn_up.bias", weights(N_FF, scale=0.1))
    writer.add_tensor("blk.0.ffn_down.weight", weights(N_EMBD, N_FF))
    writer.add_tensor("blk.0.ffn_down.bias", weights(N_EMBD, scale=0.1))
    writer.add_tensor("blk.0.layer_output_norm.weight", ones)
    writer.add_tensor("blk.0.layer_output_norm.bias", zeros)
    writer.add_tensor("cls.weight", weights(N_EMBD, N_EMBD))
    writer.add_tensor("cls.bias", weights(N_EMBD, scale=0.1))
    writer.add_tensor("cls.output.weight", weights(1, N_EMBD))
    writer.add_tensor("cls.output.bias", np.array([0.25], dtype=np.float32))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
