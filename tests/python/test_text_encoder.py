"""flame.TextEncoder from Python equals `flame embed`'s store bit for bit;
flame.tokenizer equals `flame llm tokenize` and Hugging Face's tokenizers."""
import json
import threading

import pytest
import torch

import flame
from conftest import SHARED, SMOLLM2_GGUF, run_flame

CAPTIONS = {
    "dog": "A black dog runs along the beach.",
    "kids": "Two children in red jackets are building a snowman in a park while their parents watch.",
    "unicode": "Ein Café am Fluss, über dem ein 🎈 schwebt.",
    "short": "A cat.",
    "long": " ".join(["A man in a blue shirt rides a bicycle past a row of old houses."] * 6),
}


def write_jsonl(path):
    with open(path, "w", encoding="utf-8") as f:
        for key, caption in CAPTIONS.items():
            f.write(json.dumps({"key": key, "caption": caption}) + "\n")
    return path


def embed_store(llm, prompts, out, *extra):
    run_flame("embed", "--llm", llm, "--prompts", prompts, "--input", write_jsonl(out.parent / f"{out.name}.jsonl"),
              "--field", "caption", "--out", out, "--log-level", "warn", *extra)
    return flame.Store(out)


@pytest.mark.parametrize("prompts,mode", [("long", "fda"), ("short", "fda-cache"), ("raw", "fda")])
def test_encode_equals_embed_store_f32(tiny_llm, work, prompts, mode):
    store = embed_store(tiny_llm, prompts, work / f"py-store-{prompts}-{mode}", "--dtype", "f32", "--mode", mode)
    encoder = flame.TextEncoder(flame.LLM(tiny_llm, dtype="f32"), prompts=prompts, mode=mode)
    got = encoder.encode(list(CAPTIONS.values()))
    assert got.dtype == torch.float32 and got.shape == (len(CAPTIONS), store.num_facets, store.dim)
    assert encoder.num_facets == store.num_facets and encoder.facets == store.facets
    for i, key in enumerate(CAPTIONS):
        assert torch.equal(got[i].to(store.dtype), store[key]), key  # the store's f16, bit for bit


def test_encode_equals_embed_store_real_llm_bf16(work):
    """The real pretrained SmolLM2 (Q4_1 GGUF), bf16 compute, a bf16 store, the paper's K = 7."""
    if not SMOLLM2_GGUF.exists():
        pytest.skip("models/SmolLM2-135M-Instruct.Q4_1.gguf missing: run scripts/setup")
    store = embed_store(SMOLLM2_GGUF, "long", work / "py-store-smollm2", "--store-dtype", "bf16")
    got = flame.TextEncoder(flame.LLM(SMOLLM2_GGUF), prompts="long").encode(list(CAPTIONS.values()))
    assert store.num_facets == 7 and store.dtype == torch.bfloat16
    assert torch.equal(got.to(torch.bfloat16), torch.stack([store[k] for k in CAPTIONS]))


def test_encode_modes_and_layers(tiny_llm):
    """FDA equals K separate prompts (naive) to rounding; another layer gives other vectors."""
    llm = flame.LLM(tiny_llm, dtype="f32")
    texts = list(CAPTIONS.values())
    fda = flame.TextEncoder(llm, prompts="long").encode(texts)
    naive = flame.TextEncoder(llm, prompts="long", mode="naive").encode(texts)
    torch.testing.assert_close(fda, naive, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(fda, flame.TextEncoder(llm, prompts="long", layer=-1).encode(texts))
    assert flame.TextEncoder(llm, prompts="long").encode("one caption").shape[0] == 1
    assert flame.TextEncoder(llm, prompts="long").encode([]).shape[0] == 0


def test_encode_releases_the_gil(tiny_llm):
    """Two Python threads encode at once: each sees the same result as alone."""
    encoder = flame.TextEncoder(flame.LLM(tiny_llm, dtype="f32"), prompts="long")
    texts = list(CAPTIONS.values()) * 4
    alone = encoder.encode(texts)
    results = [None, None]

    def work(i):
        results[i] = encoder.encode(texts)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(r, alone) for r in results)


def test_python_runs_while_encode_runs(tiny_llm):
    """While one thread is inside encode, the main thread keeps running Python:
    with the GIL held it would stall for the whole call."""
    import time
    encoder = flame.TextEncoder(flame.LLM(tiny_llm, dtype="f32"), prompts="long", mode="naive")
    texts = list(CAPTIONS.values())
    while True:  # a call long enough to tell a stall from scheduling noise, on any machine
        t0 = time.perf_counter()
        encoder.encode(texts)
        alone = time.perf_counter() - t0
        if alone > 0.2 or len(texts) > 5000:
            break
        texts = texts * 2
    worker = threading.Thread(target=encoder.encode, args=(texts,))
    stamps = [time.perf_counter()]
    worker.start()
    while worker.is_alive():
        stamps.append(time.perf_counter())
    worker.join()
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert alone > 0.2, "the workload is too small to tell"
    assert max(gaps) < alone / 2, (max(gaps), alone)


def test_tokenizer_matches_cli_and_hugging_face():
    from tokenizers import Tokenizer as HfTokenizer
    path = SHARED / "tokenizers" / "smollm"
    tok = flame.tokenizer(path)
    hf = HfTokenizer.from_file(str(path / "tokenizer.json"))
    hf.no_padding()  # this tokenizer.json pads to a fixed length; flame's ids are the unpadded ones
    hf.no_truncation()
    for text in list(CAPTIONS.values()) + ["", "  leading spaces\tand\ttabs\n", "ünïcödé 日本語"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert ids == hf.encode(text, add_special_tokens=False).ids, text
        assert tok.decode(ids) == hf.decode(ids, skip_special_tokens=False), text
        if text:
            cli = run_flame("llm", "tokenize", "--ids-only", "--no-special", path, text).stdout.split()
            assert ids == [int(i) for i in cli], text
    assert tok.vocab_size == hf.get_vocab_size(with_added_tokens=True)
    # A token ending inside a UTF-8 sequence decodes with U+FFFD, as Hugging Face does.
    partial = tok.encode("日", add_special_tokens=False)
    assert tok.decode(partial[:1]) == hf.decode(partial[:1])
