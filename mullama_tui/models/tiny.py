"""Models made on the spot (nothing big is shipped): random-weight GGUFs of real vocabulary
sizes, whose timing is all that matters, and copies of a real GGUF with another chat
template (how a thinking model's prompt is shown without downloading one).

`bench --overhead` and its test use one with Llama 3's 128,256-token vocabulary and tiny
layers, so the engine's per-token host work over a big vocabulary (sampling, logits)
shows without a big model or a GPU.
"""

from __future__ import annotations

from pathlib import Path

LLAMA3_VOCAB = 128_256


def make_random_gguf(path: Path, *, n_vocab: int = LLAMA3_VOCAB, n_embd: int = 64, n_layer: int = 1,
                     n_head: int = 2, n_kv: int = 1, n_ff: int = 128, seed: int = 0) -> Path:
    """A llama-architecture GGUF (F16 weights drawn at random) with an SPM vocabulary of
    `n_vocab` made-up tokens (plus the 256 byte tokens), so any text tokenizes."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    head_dim = n_embd // n_head

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)

    def ones(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.float32)

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(f"random {n_vocab}-token vocabulary")
    w.add_context_length(4096)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_vocab_size(n_vocab)
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    tokens += [f"\u2581t{i}".encode() for i in range(n_vocab - len(tokens))]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(n_vocab)])
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (n_vocab - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.add_tensor("token_embd.weight", weights(n_vocab, n_embd))
    w.add_tensor("output_norm.weight", ones(n_embd))
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones(n_embd))
        w.add_tensor(p + "ffn_norm.weight", ones(n_embd))
        w.add_tensor(p + "attn_q.weight", weights(n_embd, n_embd))
        w.add_tensor(p + "attn_k.weight", weights(n_kv * head_dim, n_embd))
        w.add_tensor(p + "attn_v.weight", weights(n_kv * head_dim, n_embd))
        w.add_tensor(p + "attn_output.weight", weights(n_embd, n_embd))
        w.add_tensor(p + "ffn_gate.weight", weights(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", weights(n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", weights(n_embd, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def with_chat_template(src: Path, dst: Path, template: str) -> Path:
    """A copy of a GGUF with another chat template (the `gguf` package rewrites the
    metadata; the weights are copied as they are)."""
    import gguf

    reader = gguf.GGUFReader(str(src), "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(str(dst), arch=arch, endianess=reader.endianess)
    for f in reader.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF.") \
                or f.name == gguf.Keys.Tokenizer.CHAT_TEMPLATE:
            continue
        kind = f.types[0]
        writer.add_key_value(f.name, f.contents(), kind,
                             sub_type=f.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    writer.add_chat_template(template)
    for t in reader.tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    writer.close()
    return dst


# ChatML, as SmolLM2's own template, but the assistant turn opens a thinking block
# (as DeepSeek-R1 distills' templates do): what a thinking model's prompt looks like.
THINKING_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}"
    "{% endif %}")
