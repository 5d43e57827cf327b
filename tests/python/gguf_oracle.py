"""The Python side of tests/test_gguf_model.cpp: llama.cpp's own reader (the
`gguf` package) and Hugging Face (`transformers`, `tokenizers`) as oracles for
flame's GGUF weights, model and tokenizer.

  gguf_oracle.py quantized OUT.gguf EXPECTED.safetensors
      A GGUF holding random tensors of every GGML type flame reads, quantised
      by gguf.quants (random blocks for Q4_K / Q6_K, which it only decodes),
      and gguf.quants.dequantize of each stored tensor as float32.
  gguf_oracle.py hidden MODEL.gguf TOKENIZER_JSON OUT.json TEXT...
      transformers loading the GGUF (dequantised, float32): each text's token
      ids (`tokenizers` on TOKENIZER_JSON) and the hidden states of every
      layer at every position.
  gguf_oracle.py convert HF_DIR OUT.gguf TYPE
      A Hugging Face checkpoint (config.json + model.safetensors) written as
      llama.cpp's convert_hf_to_gguf.py writes it: "llama" for Llama and
      Mistral (q/k rows permuted for interleaved RoPE), "qwen2" as is; 2-D
      weights stored as TYPE (F32, F16, Q8_0, ...), norms and biases as F32.
  gguf_oracle.py tokenize MODEL.gguf TOKENIZER_JSON SHARED_DIR OUT.json
      A multilingual corpus (multilingual_corpus) and its ids from
      `tokenizers` on TOKENIZER_JSON, after checking that the GGUF holds the
      same vocabulary and merges.
"""
import json
import os
import sys
import tempfile

import numpy as np


def quantized(out_gguf, out_expected):
    import gguf
    from safetensors.numpy import save_file

    T = gguf.GGMLQuantizationType
    rng = np.random.default_rng(7)
    writer = gguf.GGUFWriter(out_gguf, "llama")
    expected = {}
    # Two rows of 2 super-blocks: every block layout is crossed at least twice.
    shape = (2, 512)
    for qtype in (T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        values = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        values[0, :3] = [0.0, -0.0, 1e-7]  # zero and a subnormal-sized weight
        raw = gguf.quants.quantize(values, qtype)
        writer.add_tensor(f"t.{qtype.name}", raw, raw_dtype=qtype)
        expected[f"t.{qtype.name}"] = gguf.quants.dequantize(raw, qtype).reshape(shape)
    for qtype in (T.Q4_K, T.Q6_K):
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        blocks = shape[0] * shape[1] // block_size
        raw = rng.integers(0, 256, size=(blocks, type_size), dtype=np.uint8)
        # Finite f16 scales: d (and dmin) in [2^-10, 2^-6).
        halves = (rng.random(blocks * 2) * 0.01 + 0.001).astype(np.float16).view(np.uint8).reshape(blocks, 4)
        if qtype == T.Q4_K:
            raw[:, 0:4] = halves
        else:
            raw[:, -2:] = halves[:, :2]
        raw = raw.reshape(shape[0], -1)
        writer.add_tensor(f"t.{qtype.name}", raw, raw_dtype=qtype)
        expected[f"t.{qtype.name}"] = gguf.quants.dequantize(raw, qtype).reshape(shape)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in expected.items()}, out_expected)


def hidden(model_gguf, tokenizer_json, out_json, texts):
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    folder, name = os.path.split(os.path.abspath(model_gguf))
    tokenizer = Tokenizer.from_file(tokenizer_json)
    tokenizer.no_padding()
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    rows = []
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        with torch.no_grad():
            out = model(torch.tensor([ids]), output_hidden_states=True)
        rows.append({"text": text, "ids": ids,
                     "hidden": [h[0].tolist() for h in out.hidden_states]})
    with open(out_json, "w") as f:
        json.dump({"transformers": __import__("transformers").__version__, "rows": rows}, f)


def multilingual_corpus(shared):
    """llama.cpp's tokenizer test strings, 80 Multi30k images in en/de/fr/cs, and other scripts."""
    import csv

    inp = open(os.path.join(shared, "tokenizers/llama.cpp-vocab/ggml-vocab-llama-bpe.gguf.inp"),
               encoding="utf-8").read()
    texts = inp.split("\n__ggml_vocab_test__\n")[:-1]
    with open(os.path.join(shared, "data/flickr8k/multi30k.tsv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[:80]
    texts += [row[lang] for row in rows for lang in ("en", "de", "fr", "cs")]
    texts += ["东京是日本的首都。", "القاهرة عاصمة مصر", "Ελληνικά: ένας σκύλος τρέχει", "Собака бежит по пляжу.",
              "犬がビーチを走っている", "emoji 🐕‍🦺 and tabs\tand\nnewlines", "   leading spaces", "1234567 3.14 1,000"]
    return texts


def permute(w, heads):
    """llama.cpp's LlamaModel.permute: per head, rows [2, D/2] -> [D/2, 2]."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def convert(hf_dir, out_gguf, weight_type):
    import gguf
    from safetensors.numpy import load_file

    config = json.load(open(os.path.join(hf_dir, "config.json")))
    arch = "qwen2" if config["model_type"] == "qwen2" else "llama"
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    writer = gguf.GGUFWriter(out_gguf, arch)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_freq_base(config["rope_theta"])
    if config.get("head_dim"):  # Mistral-Nemo style: heads x head_dim != hidden_size
        writer.add_key_length(config["head_dim"])
        writer.add_value_length(config["head_dim"])
    spec = json.load(open(os.path.join(hf_dir, "tokenizer.json"), encoding="utf-8"))
    by_id = {i: t for t, i in spec["model"]["vocab"].items()}
    special = {a["id"] for a in spec.get("added_tokens", []) if a.get("special")}
    by_id.update({a["id"]: a["content"] for a in spec.get("added_tokens", [])})
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list([by_id[i] for i in range(len(by_id))])
    writer.add_token_types([3 if i in special else 1 for i in range(len(by_id))])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    names = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
    parts = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
             "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down"}
    qtype = gguf.GGMLQuantizationType[weight_type]
    for name, w in load_file(os.path.join(hf_dir, "model.safetensors")).items():
        stem, suffix = name.rsplit(".", 1)
        part = None
        if stem.startswith("model.layers."):
            layer, part = stem[len("model.layers."):].split(".", 1)
            gguf_name = f"blk.{layer}.{parts[part]}.{suffix}"
        else:
            gguf_name = f"{names[stem]}.{suffix}"
        w = w.astype(np.float32)
        if arch == "llama" and part in ("self_attn.q_proj", "self_attn.k_proj"):
            w = permute(w, heads if part == "self_attn.q_proj" else kv_heads)
        if w.ndim == 2:
            writer.add_tensor(gguf_name, gguf.quants.quantize(w, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(gguf_name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gguf_strings(reader, key):
    field = reader.fields[key]
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


def tokenize(model_gguf, tokenizer_json, shared, out_json):
    """`tokenizers` on TOKENIZER_JSON is the oracle once the GGUF is shown to
    hold its vocabulary and merges. (transformers' GGUF tokenizer converter is
    not: it drops the smollm pre-tokenizer's digit split, and llama.cpp's own
    test vectors side with tokenizer.json.)"""
    import gguf
    from tokenizers import Tokenizer

    reader = gguf.GGUFReader(model_gguf)
    spec = json.load(open(tokenizer_json, encoding="utf-8"))
    vocab = {i: t for t, i in spec["model"]["vocab"].items()}
    tokens = gguf_strings(reader, "tokenizer.ggml.tokens")
    if any(vocab.get(i) != t for i, t in enumerate(tokens)):
        sys.exit(f"{model_gguf}: its tokens differ from {tokenizer_json}'s vocabulary")
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    if gguf_strings(reader, "tokenizer.ggml.merges") != merges:
        sys.exit(f"{model_gguf}: its merges differ from {tokenizer_json}'s")
    oracle = Tokenizer.from_file(tokenizer_json)
    oracle.no_padding()
    oracle.no_truncation()
    rows = [{"text": t, "ids": oracle.encode(t, add_special_tokens=False).ids} for t in multilingual_corpus(shared)]
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"quantized": quantized, "hidden": lambda *a: hidden(a[0], a[1], a[2], a[3:]), "tokenize": tokenize,
     "convert": convert}[command](*args)
