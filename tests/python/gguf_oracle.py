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
    {"quantized": quantized, "hidden": lambda *a: hidden(a[0], a[1], a[2], a[3:]), "tokenize": tokenize}[command](*args)
