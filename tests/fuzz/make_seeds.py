#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into tests/data/<target>-corpus
(small valid files of each kind, a few broken ones). scripts/fuzz grows the
corpora from these; run once when a target is added. Standard library only,
plus libturbojpeg through ctypes for JPEG variants."""
import ctypes, hashlib, io, json, os, struct, sys, tarfile, zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
DATA = ROOT / "tests" / "data"


def put(target, name, data):
    d = DATA / f"{target}-corpus"
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


# ---- GGUF ----
def gguf_string(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_value(t, v):
    if t == 8: return gguf_string(v)
    fmt = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}[t]
    return struct.pack(fmt, v)


def gguf_array(t, values):
    return struct.pack("<IQ", t, len(values)) + b"".join(gguf_value(t, v) for v in values)


def gguf_file(kvs, tensors=(), version=3):
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, t, v in kvs:
        out += gguf_string(key) + struct.pack("<I", t)
        out += gguf_array(*v) if t == 9 else gguf_value(t, v)
    for name, shape, ggml_type, offset in tensors:
        out += gguf_string(name) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", ggml_type, offset)
    out += b"\0" * (-len(out) % 32)
    return out + b"\0" * 64


def gguf_seeds():
    byte_tokens = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ", "Ġh", "he", "ll", "hello", "<|endoftext|>"]
    gpt2 = [("general.architecture", 8, "gpt2"), ("general.alignment", 4, 32),
            ("tokenizer.ggml.model", 8, "gpt2"), ("tokenizer.ggml.pre", 8, "default"),
            ("tokenizer.ggml.tokens", 9, (8, byte_tokens)),
            ("tokenizer.ggml.token_type", 9, (5, [1] * (len(byte_tokens) - 1) + [3])),
            ("tokenizer.ggml.merges", 9, (8, ["Ġ h", "h e", "l l", "he ll"])),
            ("tokenizer.ggml.eos_token_id", 4, len(byte_tokens) - 1), ("tokenizer.ggml.add_bos_token", 7, False)]
    put("gguf", "gpt2", gguf_file(gpt2, [("token_embd.weight", [8, len(byte_tokens)], 0, 0)]))
    spm = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["▁", "▁h", "he", "llo", "▁hello", "w", "o"]
    types = [2, 3, 3] + [6] * 256 + [1] * 7
    llama = [("tokenizer.ggml.model", 8, "llama"), ("tokenizer.ggml.tokens", 9, (8, spm)),
             ("tokenizer.ggml.scores", 9, (6, [-float(i) for i in range(len(spm))])),
             ("tokenizer.ggml.token_type", 9, (5, types)), ("tokenizer.ggml.bos_token_id", 4, 1),
             ("tokenizer.ggml.eos_token_id", 4, 2), ("tokenizer.ggml.unknown_token_id", 4, 0),
             ("tokenizer.ggml.add_bos_token", 7, True), ("tokenizer.ggml.add_space_prefix", 7, True)]
    put("gguf", "llama", gguf_file(llama, version=2))
    wp = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "##s", "h", "##e", "##l", "##o", "!"]
    bert = [("tokenizer.ggml.model", 8, "bert"), ("tokenizer.ggml.tokens", 9, (8, wp)),
            ("tokenizer.ggml.token_type", 9, (5, [3, 2, 3, 3] + [1] * 8)),
            ("tokenizer.ggml.unknown_token_id", 4, 1), ("tokenizer.ggml.seperator_token_id", 4, 3),
            ("tokenizer.ggml.cls_token_id", 4, 2), ("tokenizer.ggml.padding_token_id", 4, 0),
            ("nested", 9, (9, [])), ("reals", 9, (12, [1.5, -2.0])), ("i64", 11, -5), ("u64", 10, 2**63 + 1)]
    put("gguf", "bert", gguf_file(bert))
    # The start of each real vocabulary file: the metadata parser on real keys
    # (the arrays are cut off: these are refused, as truncated files).
    for f in sorted((SHARED / "tokenizers" / "llama.cpp-vocab").glob("*.gguf"))[:6]:
        put("gguf", f.stem, f.read_bytes()[:4096])


# ---- tokenizer.json ----
def mini_tokenizer(path, keep=320):
    j = json.loads(Path(path).read_text())
    model = j["model"]
    vocab = {k: v for k, v in model["vocab"].items() if v < keep} if isinstance(model["vocab"], dict) else model["vocab"][:keep]
    model["vocab"] = vocab
    if "merges" in model:
        merges = []
        for m in model["merges"]:
            a, b = m.split(" ", 1) if isinstance(m, str) else m
            if a in vocab and b in vocab and a + b in vocab:
                merges.append(m)
        model["merges"] = merges[:200]
    j["added_tokens"] = [a for a in j.get("added_tokens", []) if a["id"] < keep + 8][:8]
    for i, a in enumerate(j["added_tokens"]):
        a["id"] = keep + i
    pp = j.get("post_processor")
    if pp and "special_tokens" in json.dumps(pp):
        j["post_processor"] = None
    return json.dumps(j, ensure_ascii=False)


def tokenizer_json_seeds():
    for name in ["smollm", "llama3", "qwen3", "gemma3"]:
        put("tokenizer_json", name, mini_tokenizer(SHARED / "tokenizers" / name / "tokenizer.json"))
    wordpiece = {"model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                           "max_input_chars_per_word": 100,
                           "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "hello": 3, "world": 4, "##s": 5, "!": 6}},
                 "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                                "strip_accents": None, "lowercase": True},
                 "pre_tokenizer": {"type": "BertPreTokenizer"},
                 "post_processor": {"type": "TemplateProcessing",
                                    "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                               {"Sequence": {"id": "A", "type_id": 0}},
                                               {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                                    "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]},
                                                       "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}},
                 "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
                 "added_tokens": [{"id": 1, "content": "[CLS]", "special": True, "normalized": False,
                                   "single_word": False, "lstrip": False, "rstrip": False}]}
    put("tokenizer_json", "wordpiece", json.dumps(wordpiece))
    put("tokenizer_json", "no-vocab", json.dumps({"model": {"type": "BPE", "merges": []}}))
    put("tokenizer_json", "nul", b"\0{}")


def tokenizer_encode_seeds():
    inp = (SHARED / "tokenizers" / "llama.cpp-vocab" / "ggml-vocab-llama-bpe.gguf.inp").read_text()
    for i, s in enumerate(inp.split("\n__ggml_vocab_test__\n")[:24]):
        put("tokenizer_encode", f"vector-{i:02d}", s)
    for name, b in [("invalid-lead", b"\xff abc"), ("overlong", b"\xc0\xaf"), ("surrogate", b"\xed\xa0\x80"),
                    ("cut", "日本".encode()[:4]), ("special", "<|endoftext|><s></s>[CLS]<bos> x"),
                    ("spaces", "\u3000\u00a0\u200b\t\n  \r\n"), ("nul", b"a\0b")]:
        put("tokenizer_encode", name, b)


# ---- config.json ----
def llm_config_seeds():
    put("llm_config", "smollm", (SHARED / "tokenizers" / "smollm" / "config.json").read_bytes())
    for f in sorted((ROOT / "configs" / "llm").glob("*.json")):
        put("llm_config", f.stem, f.read_bytes())
    put("llm_config", "not-object", "[1, 2]")
    put("llm_config", "nul", b"\0garbage")


# ---- captions ----
def captions_seeds():
    tsv = (SHARED / "data" / "flickr8k" / "captions.tsv").read_text().splitlines()[:12]
    put("captions", "flickr8k.tsv", "\n".join(tsv) + "\n")
    m30k = (SHARED / "data" / "flickr8k" / "multi30k.tsv").read_text().splitlines()[:4]
    put("captions", "multi30k.tsv", "\n".join(m30k) + "\n")
    put("captions", "bad.tsv", "image\tcaption_index\tcaption\na.jpg\t0\t\na.jpg\tx\tdup\n\tb\tc\na.jpg\t1\t\u3000\n"
        "b.jpg\t0\tok\textra\nc.jpg\n")
    lines = [json.dumps({"key": "a", "long": "A long caption.", "short": "Short."}),
             json.dumps({"key": 7, "caption": "integer key"}), json.dumps({"key": "a", "caption": "duplicate"}),
             "{not json", json.dumps({"caption": "no key"}), json.dumps({"key": "e", "caption": ""}),
             json.dumps({"key": "nul", "caption": "\u0000"}), json.dumps({"key": "u", "caption": "\u3000\u00a0"}),
             json.dumps([1, 2]), json.dumps({"key": "n", "caption": 5}), ""]
    put("captions", "mixed.jsonl", "\n".join(lines) + "\n")
    put("captions", "invalid-utf8.jsonl", b'{"key": "x", "caption": "\xff\xfe"}\n')


# ---- tar ----
def tar_bytes(members, fmt=tarfile.USTAR_FORMAT, mode="w"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                info.mtime = 0
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tar_seeds():
    members = [("shard0/", None), ("shard0/000001.txt", b"a dog"), ("shard0/000001.jpg", b"\xff\xd8\xff"),
               ("shard0/000002.json", json.dumps({"caption": "a cat"}).encode()), ("shard0/000002.txt", b"")]
    put("tar", "ustar.tar", tar_bytes(members))
    longname = [("d/" + "x" * 150 + ".txt", b"long name"), ("k.txt", b"x")]
    put("tar", "pax.tar", tar_bytes(longname, tarfile.PAX_FORMAT))
    put("tar", "gnu.tar", tar_bytes(longname, tarfile.GNU_FORMAT))
    gz = io.BytesIO()
    with tarfile.open(fileobj=gz, mode="w:gz", format=tarfile.USTAR_FORMAT) as t:
        info = tarfile.TarInfo("a.txt"); info.size = 3; t.addfile(info, io.BytesIO(b"abc"))
    put("tar", "gz.tar", gz.getvalue())
    put("tar", "truncated.tar", tar_bytes(members)[:700])


# ---- images ----
def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, color_type, depth, rows, extra=b"", interlace=0):
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, interlace)
    raw = b"".join(b"\0" + r for r in rows)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra + png_chunk(b"IDAT", zlib.compress(raw)) + \
        png_chunk(b"IEND", b"")


def jpeg(width, height, pixel_format, subsampling, flags, pixel=lambda x, y, c: (x * 37 + y * 11 + c * 70) % 256):
    tj = ctypes.CDLL("libturbojpeg.so.0")
    tj.tjInitCompress.restype = ctypes.c_void_p
    handle = tj.tjInitCompress()
    channels = {0: 3, 6: 1, 11: 4}[pixel_format]  # TJPF_RGB, TJPF_GRAY, TJPF_CMYK
    src = bytes(pixel(x, y, c) for y in range(height) for x in range(width) for c in range(channels))
    out = ctypes.POINTER(ctypes.c_ubyte)()
    size = ctypes.c_ulong(0)
    status = tj.tjCompress2(ctypes.c_void_p(handle), src, width, 0, height, pixel_format, ctypes.byref(out),
                            ctypes.byref(size), subsampling, 85, flags)
    assert status == 0
    data = ctypes.string_at(out, size.value)
    tj.tjFree(out)
    tj.tjDestroy(ctypes.c_void_p(handle))
    return data


def image_seeds():
    for f in ["airplane/0000.jpg", "cat/0001.jpg"]:
        put("image_decode", f.replace("/", "-"), (SHARED / "data" / "cifar10" / "test" / f).read_bytes())
    put("image_decode", "gray.jpg", jpeg(16, 8, 6, 3, 0))  # TJSAMP_GRAY
    put("image_decode", "cmyk.jpg", jpeg(8, 8, 11, 0, 0))
    put("image_decode", "progressive-420.jpg", jpeg(24, 16, 0, 2, 16384))  # TJFLAG_PROGRESSIVE
    put("image_decode", "truncated.jpg", jpeg(24, 16, 0, 1, 0)[:100])
    put("image_decode", "rgb.png", png(3, 2, 2, 8, [bytes(range(9)), bytes(range(9, 18))]))
    put("image_decode", "gray16.png", png(2, 2, 0, 16, [b"\x00\x01\xff\xff", b"\x80\x00\x00\x00"]))
    put("image_decode", "rgba.png", png(1, 1, 6, 8, [b"\x10\x20\x30\x40"]))
    put("image_decode", "palette.png", png(2, 1, 3, 8, [b"\x00\x01"],
                                           extra=png_chunk(b"PLTE", b"\xff\x00\x00\x00\xff\x00") +
                                           png_chunk(b"tRNS", b"\x80")))
    put("image_decode", "gray1-interlaced.png", png(1, 1, 0, 1, [b"\x80"], interlace=1))
    put("image_decode", "webp", b"RIFF\x10\0\0\0WEBPVP8 ")
    put("image_decode", "gif", b"GIF89a\x01\0\x01\0")


# ---- store manifest / shard metadata ----
def identity(**over):
    j = {"format": "flame-embedding-store", "version": 1,
         "llm": {"name": "smollm", "architecture": "llama", "config_sha256": "ab" * 32, "weights_fingerprint": "cd" * 8},
         "prompt_set": {"name": "short", "sha256": "ef" * 32, "facets": ["short"]}, "layer": -1, "dtype": "f16",
         "num_facets": 1, "dim": 576, "normalized": True, "computation": {"compute_dtype": "bf16", "mode": "fda"}}
    j.update(over)
    return j


def store_seeds():
    m = identity(count=3, part={"index": 0, "count": 1},
                 shards=[{"file": "shard-00000.safetensors", "count": 2}, {"file": "shard-00001.safetensors", "count": 1}],
                 job={"inputs": ["captions.jsonl"]})
    put("store_manifest", "manifest.json", json.dumps(m))
    put("store_manifest", "int8-no-part.json", json.dumps(identity(dtype="int8", count=0, shards=[])))
    put("store_manifest", "bad-count.json", json.dumps(identity(count=1e300, shards=[], layer=2.5)))
    shard = {"identity": json.dumps(identity()), "part": json.dumps({"index": 1, "count": 4}),
             "keys": json.dumps(["a", "b", "c"])}
    put("store_manifest", "shard-metadata.json", json.dumps(shard))


def checkpoint_config_seeds():
    vit = json.loads((ROOT / "configs" / "models" / "vit-micro-32.json").read_text())
    put("checkpoint_config", "flame.json", json.dumps({"vit": vit, "text_dim": 576, "image_projection": "mlp"}))
    clip = json.loads((ROOT / "configs" / "models" / "clip-text" / "clip-text-micro.json").read_text())
    put("checkpoint_config", "clip.json", json.dumps({"vit": vit, "text_dim": 64, "image_projection": "linear",
                                                      "text_tower": "clip", "clip_text": clip, "vocab_size": 49408}))
    big = dict(vit, width=1 << 40, heads=1)
    put("checkpoint_config", "huge.json", json.dumps({"vit": big, "text_dim": 576}))
    put("checkpoint_config", "text-dim-string.json", json.dumps({"vit": vit, "text_dim": "576", "text_tower": 3}))


if __name__ == "__main__":
    for f in [gguf_seeds, tokenizer_json_seeds, tokenizer_encode_seeds, llm_config_seeds, captions_seeds, tar_seeds,
              image_seeds, store_seeds, checkpoint_config_seeds]:
        f()
    print("seeds written under", DATA)
