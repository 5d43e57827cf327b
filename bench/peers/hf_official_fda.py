#!/usr/bin/env python3
"""FLAME's own facet embedding, re-created with Hugging Face transformers: the
peer that bench/gpu_run times flame embed against.

official (after MIV-XJTU/FLAME src/open_clip/multiprompteol_embeddings.py): the
LLM in fp16 (from_pretrained of config.json + safetensors), batches of 32
captions in input order, ONE concatenated sequence per caption (prompt prefix
holding the caption, then the K facet suffixes), LEFT padding to the batch's
longest, a dense additive 4-D mask in which the prefix is causal and each facet
attends to the prefix and itself only, DEFAULT positions (no position_ids: a
facet keeps its positions in the concatenated row), the base model run through
all L layers, and a forward hook on layer L-1 read at each facet's last token.
Differences, both in the peer's favour: pad keys are masked too (the official
mask only blanks pad query rows) and the mask is [B,1,S,S], not expanded to
[B,H,S,S]; tokenization of the facets is done once, not per batch.
naive: K separate prompts per caption (prefix + one facet), for each batch of
32 captions K passes of 32 prompts, left padded, 2-D padding mask, SDPA.

Prompts and tokenization follow flame (configs/prompts/*.json, text/prompts.cpp:
clean_caption; prefix encoded with special tokens, facets without). Writes one
JSON object with a record per mode: tokens/s, captions/s, peak memory.
"""
import argparse
import json
import os
import re
import sys
import time


def clean_caption(text):
    """flame's clean_caption: collapse whitespace, '"' -> "'", end with . ! or ?."""
    out = " ".join(w for w in re.split(r"[ \t\r\n]", text) if w).replace('"', "'")
    if out and out[-1] not in ".!?":
        out += "."
    return out


def load_prompts(name_or_path, configs):
    """A prompt set as flame reads it: a preset name or a path; 'extends' + 'num_facets'."""
    path = name_or_path if os.path.exists(name_or_path) else os.path.join(configs, name_or_path + ".json")
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    prefix, facets = None, []
    if "extends" in j:
        prefix, facets = load_prompts(j["extends"], configs)
        facets = facets[: j.get("num_facets", len(facets))]
    prefix = j.get("prefix", prefix)
    if "facets" in j:
        facets = [f["text"] for f in j["facets"]]
    return prefix, facets


def concat_rows(prefixes, facets):
    """One row per caption: prefix + every facet; segment ids (0 = prefix, k + 1 =
    facet k) for the mask, and the index of each facet's last token."""
    rows, segs, ends = [], [], []
    for p in prefixes:
        row, seg, end = list(p), [0] * len(p), []
        for k, f in enumerate(facets):
            row += f
            seg += [k + 1] * len(f)
            end.append(len(row) - 1)
        rows.append(row)
        segs.append(seg)
        ends.append(end)
    return rows, segs, ends


def make_tokenizer(path):
    """texts, special -> token ids: transformers' fast tokenizer over tokenizer.json (as
    flame reads it); the tokenizers library itself where that class is gone."""
    try:
        from transformers import PreTrainedTokenizerFast
        t = PreTrainedTokenizerFast(tokenizer_file=path)
        return lambda texts, special=True: t(texts, add_special_tokens=special)["input_ids"]
    except ImportError:
        from tokenizers import Tokenizer
        t = Tokenizer.from_file(path)
        return lambda texts, special=True: [e.ids for e in t.encode_batch(texts, add_special_tokens=special)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--llm", required=True, help="checkpoint folder (config.json, safetensors, tokenizer.json)")
    p.add_argument("--input", required=True, help="JSONL captions (fields key and --field)")
    p.add_argument("--field", default="long")
    p.add_argument("--prompts", default="long", help="prompt set name (configs/prompts) or JSON path")
    p.add_argument("--configs", default=os.path.join(os.path.dirname(__file__), "..", "..", "configs", "prompts"))
    p.add_argument("--mode", choices=["official", "naive", "both"], default="official")
    p.add_argument("--limit", type=int, default=0, help="captions for official (0 = all)")
    p.add_argument("--naive-limit", type=int, default=0, help="captions for naive (0 = --limit)")
    p.add_argument("--batch", type=int, default=32, help="captions per batch (official code: 32)")
    p.add_argument("--dtype", choices=["fp16", "bf16"], default="fp16")
    p.add_argument("--deadline", type=float, default=0, help="unix time: stop a mode's loop past it (partial)")
    p.add_argument("--out", required=True, help="JSON output")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    import torch
    import transformers
    from transformers import MistralForCausalLM

    with open(a.input, encoding="utf-8") as f:
        texts = [json.loads(line)[a.field] for line in f if line.strip()]
    prefix_template, facet_texts = load_prompts(a.prompts, a.configs)
    head, tail = prefix_template.split("{caption}")
    tok = make_tokenizer(os.path.join(a.llm, "tokenizer.json"))
    facets = tok([t for t in facet_texts], False)
    K = len(facets)
    prompts = [head + clean_caption(t) + tail for t in texts]
    # Token counts for bench/gpu_run's FLOP and CC3M-hours arithmetic.
    prefix_lens = [len(x) for x in tok(prompts)]
    result = {"peer": "hf_official_fda", "torch": torch.__version__, "transformers": transformers.__version__,
              "token_stats": {"captions": len(texts), "mean_prefix_tokens": sum(prefix_lens) / len(prefix_lens),
                              "mean_prefix_sq": sum(x * x for x in prefix_lens) / len(prefix_lens),
                              "template_tokens": len(tok([head + tail])[0]),
                              "mean_words": sum(len(t.split()) for t in texts) / len(texts),
                              "facet_tokens": [len(x) for x in facets]},
              "modes": []}

    dev = torch.device("cuda")
    dtype = torch.float16 if a.dtype == "fp16" else torch.bfloat16
    t0 = time.time()
    kw = {"dtype": dtype} if int(transformers.__version__.split(".")[0]) >= 5 else {"torch_dtype": dtype}
    model = MistralForCausalLM.from_pretrained(a.llm, attn_implementation="sdpa", device_map="cuda", **kw).eval()
    result["load_seconds"] = time.time() - t0
    base, L = model.model, model.config.num_hidden_layers
    result["layers"] = L
    grabbed = {}
    # Layer L-1 (HF hidden_states[L-1]) is the output of decoder layer index L-2.
    base.layers[L - 2].register_forward_hook(
        lambda m, i, o: grabbed.__setitem__("h", o[0] if isinstance(o, tuple) else o))
    pad_id = 0  # the official code sets pad_token_id = 0
    neg = torch.finfo(dtype).min

    def left_pad(rows):
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, width - len(r):] = torch.tensor(r)
        return ids, width

    def official_batch(chunk):
        rows, segs, ends = concat_rows(tok(chunk), facets)
        ids, width = left_pad(rows)
        seg = torch.full(ids.shape, -1, dtype=torch.long)
        for b, s in enumerate(segs):
            seg[b, width - len(s):] = torch.tensor(s)
        ids, seg = ids.to(dev, non_blocking=True), seg.to(dev, non_blocking=True)
        i = torch.arange(width, device=dev)
        sq, sk = seg[:, :, None], seg[:, None, :]
        allowed = (i[None, :] <= i[:, None]) & (sk != -1) & ((sk == 0) | (sk == sq))
        allowed |= torch.eye(width, dtype=torch.bool, device=dev)  # pad rows: no all-masked row
        mask = torch.zeros(allowed.shape, dtype=dtype, device=dev).masked_fill_(~allowed, neg)[:, None]
        base(input_ids=ids, attention_mask=mask, use_cache=False)
        at = torch.tensor([[width - len(r) + e for e in end] for r, end in zip(rows, ends)], device=dev)
        vec = torch.gather(grabbed["h"], 1, at[:, :, None].expand(-1, -1, grabbed["h"].shape[-1]))
        return vec.float().cpu(), sum(len(r) for r in rows), ids.numel()

    def naive_batch(chunk):
        pre = tok(chunk)
        vecs, tokens, padded = [], 0, 0
        for f in facets:
            ids, width = left_pad([p + f for p in pre])
            att = (torch.arange(width)[None, :] >= (width - torch.tensor([len(p) + len(f) for p in pre]))[:, None])
            base(input_ids=ids.to(dev), attention_mask=att.long().to(dev), use_cache=False)
            vecs.append(grabbed["h"][:, -1])
            tokens += sum(len(p) + len(f) for p in pre)
            padded += ids.numel()
        return torch.stack(vecs, 1).float().cpu(), tokens, padded

    modes = ["official", "naive"] if a.mode == "both" else [a.mode]
    for mode in modes:
        n = a.limit or len(prompts)
        if mode == "naive" and a.naive_limit:
            n = a.naive_limit
        n = min(n, len(prompts))
        run = official_batch if mode == "official" else naive_batch
        if a.deadline and time.time() > a.deadline - 20:
            print(f"hf_official_fda: {mode} skipped, past the deadline", file=sys.stderr)
            continue
        with torch.inference_mode():
            run(prompts[: a.batch])  # warm-up (kernels, allocator), not timed
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start, done, tokens, padded, nan = time.time(), 0, 0, 0, 0
            for b in range(0, n, a.batch):
                vec, t, p = run(prompts[b: min(n, b + a.batch)])  # .cpu() synchronizes
                done, tokens, padded = done + vec.shape[0], tokens + t, padded + p
                nan += int((~torch.isfinite(vec).all(-1)).sum())
                if a.deadline and time.time() > a.deadline:
                    break
            seconds = time.time() - start
        rec = {"mode": mode, "captions": done, "partial": done < n, "K": K, "batch": a.batch, "dtype": a.dtype,
               "tokens": tokens, "padded_tokens": padded, "seconds": seconds,
               "captions_per_s": done / seconds, "tokens_per_s": tokens / seconds, "nonfinite_vectors": nan,
               "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
               "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30}
        print("hf_official_fda: " + json.dumps(rec), file=sys.stderr)
        result["modes"].append(rec)
        with open(a.out, "w") as f:  # after every mode: a later kill keeps what finished
            json.dump(result, f, indent=1)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
