"""A tiny random-weight llama GGUF with a byte vocabulary, written offline.

Prefill cost depends on the architecture's size, not on what the weights
say, so random weights measure prompt processing honestly. The vocabulary
is ``<unk> <s> </s>`` plus the 256 byte tokens, so any text maps to token
ids ``3 + byte`` without a tokenizer. Needs the ``gguf`` package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["BYTE_OFFSET", "text_to_tokens", "write_tiny_llama"]

#: token id of byte 0
BYTE_OFFSET = 3


def text_to_tokens(text: str) -> list[int]:
    """Token ids of ``text`` in the byte vocabulary (UTF-8 bytes + 3)."""
    return [BYTE_OFFSET + b for b in text.encode("utf-8")]


def write_tiny_llama(
    path: str | Path,
    n_embd: int = 512,
    n_layer: int = 8,
    n_head: int = 8,
    n_ff: int | None = None,
    n_ctx: int = 32768,
    seed: int = 0,
) -> Path:
    """Write the model to ``path`` (f16 matrices); returns the path."""
    import gguf  # optional dependency (extra "bench")

    if n_embd % n_head:
        raise ValueError("n_embd must be a multiple of n_head")
    n_ff = n_ff or 4 * n_embd
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{b:02X}>".encode() for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.BYTE] * 256
    n_vocab = len(tokens)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("contextpilot-tiny-random")
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)

    def mat(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * 0.02).astype(np.float16)

    ones = np.ones(n_embd, dtype=np.float32)
    w.add_tensor("token_embd.weight", mat(n_vocab, n_embd))
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(p + name + ".weight", mat(n_embd, n_embd))
        w.add_tensor(p + "ffn_norm.weight", ones)
        w.add_tensor(p + "ffn_gate.weight", mat(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", mat(n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", mat(n_embd, n_ff))
    w.add_tensor("output_norm.weight", ones)
    w.add_tensor("output.weight", mat(n_vocab, n_embd))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
