"""flame.load: a run and its OpenCLIP export give the same image features,
OpenCLIP itself (open_clip_oracle.py) gives them too, and zero-shot
classification from Python equals `flame eval`'s."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import flame
from conftest import DATA, FLICKR, run_flame

HERE = Path(__file__).resolve().parent


def flickr_images(n=6):
    names = (FLICKR / "splits" / "test.txt").read_text().split()[:n]
    return [FLICKR / "images" / name for name in names]


@pytest.fixture(scope="module")
def run_model(run_dir, tiny_llm):
    return flame.load(run_dir, llm=tiny_llm, dtype="f32")


def test_run_and_export_give_the_same_features(run_model, export_dir, tiny_llm):
    model, preprocess = run_model
    exported, preprocess2 = flame.load(export_dir, llm=tiny_llm, dtype="f32")
    assert preprocess.image_size == preprocess2.image_size == model.image_size
    images = torch.stack([preprocess(p) for p in flickr_images()])
    a, b = model.encode_image(images), exported.encode_image(images)
    assert a.shape == (len(images), 64) and a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    unit = model.encode_image(images, normalize=True)
    torch.testing.assert_close(unit, torch.nn.functional.normalize(a, dim=-1), rtol=0, atol=1e-6)
    torch.testing.assert_close(model.logit_scale, exported.logit_scale)
    assert model.logit_bias is None  # InfoNCE: OpenCLIP has none either
    texts = ["a dog on the grass", "two people on a bench"]
    torch.testing.assert_close(model.encode_text(texts), exported.encode_text(texts), rtol=0, atol=0)


def test_open_clip_reference_gives_the_same_features(run_model, export_dir, work):
    """OpenCLIP's own VisionTransformer (and its transforms) on the export's files."""
    model, preprocess = run_model
    files = flickr_images()
    images = torch.stack([preprocess(p) for p in files])
    inputs = work / "python-oracle-inputs.safetensors"
    save_file({"images": images.contiguous(), "image_features": model.encode_image(images).contiguous()},
              str(inputs))
    listing = work / "python-oracle-images.txt"
    listing.write_text("".join(f"{p}\n" for p in files))
    r = subprocess.run([sys.executable, str(HERE / "open_clip_oracle.py"), str(export_dir / "open_clip_model.safetensors"),
                        str(export_dir / "open_clip_config.json"), str(inputs), f"--images={listing}",
                        # Pillow's fixed-point resampling, 128 px down to 32: up to ~6 steps of 1/255
                        # off torch's (the tensor path is compared exactly, 1e-5).
                        "--pil-steps=8"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_preprocess_inputs_agree():
    """A path and its encoded bytes give flame eval's pixels; PIL's decode of the
    same JPEG, and a uint8 tensor of those pixels, give the same ones."""
    preprocess = flame.Preprocess(32)
    for path in flickr_images(3) + [DATA / "cifar10" / "test" / "cat" / sorted(os.listdir(DATA / "cifar10" / "test" / "cat"))[0]]:
        from_path = preprocess(path)
        assert from_path.shape == (3, 32, 32) and from_path.dtype == torch.float32
        assert torch.equal(preprocess(path.read_bytes()), from_path)
        assert torch.equal(preprocess(Image.open(path)), from_path), path
        pixels = torch.from_numpy(__import__("numpy").array(Image.open(path).convert("RGB")))
        assert torch.equal(preprocess(pixels), from_path)


def test_zero_shot_equals_flame_eval(run_model, run_dir, tiny_llm, work):
    model, preprocess = run_model
    out = work / "python-eval.json"
    limit = 30
    run_flame("eval", "--model", run_dir, "--llm", tiny_llm, "--dtype", "f32", "--benchmark", "cifar10", "--tasks",
              "cifar10-zero-shot", "--limit", limit, "--data-root", DATA, "--out", out, "--log-level", "warn")
    expected = next(t for t in json.loads(out.read_text())["tasks"] if t["name"] == "cifar10-zero-shot")
    root = DATA / "cifar10" / "test"
    classes = (DATA / "cifar10" / "classes.txt").read_text().split()
    files, labels = [], []
    for c, name in enumerate(classes):  # --limit 30 over 10 classes: the first 3 of each, sorted
        for f in sorted(os.listdir(root / name))[: limit // len(classes)]:
            files.append(root / name / f)
            labels.append(c)
    classifier = model.zero_shot_classifier(classes, flame.templates("photo"))
    scores = model.encode_image(torch.stack([preprocess(f) for f in files]), normalize=True) @ classifier.T
    labels = torch.tensor(labels)
    top1 = (scores.argmax(-1) == labels).float()
    top5 = (scores.topk(5, dim=-1).indices == labels[:, None]).any(-1).float()
    assert expected["images"] == len(files)
    assert top1.mean().item() == pytest.approx(expected["top1"], abs=1e-6)
    assert top5.mean().item() == pytest.approx(expected["top5"], abs=1e-6)
    for c, name in enumerate(classes):
        assert top1[labels == c].mean().item() == pytest.approx(expected["per_class_top1"][name], abs=1e-6), name
    assert model.text_encoding("raw") == expected["text_encoding"]


def test_text_side_is_the_stores(run_model, stores, tiny_llm):
    """encode_text_facets("long") of the stores' descriptions: their stored facets, normalised."""
    model, _ = run_model
    store = flame.Store(stores["long"])
    encoder = flame.TextEncoder(flame.LLM(tiny_llm, dtype="f32"), prompts="long")
    texts = ["A dog runs on the grass .", "A girl in a pink dress ."]
    facets = model.encode_text_facets(texts, prompts="long")
    assert facets.shape == (2, store.num_facets, store.dim)
    torch.testing.assert_close(facets, torch.nn.functional.normalize(encoder.encode(texts), dim=-1), rtol=0,
                               atol=1e-6)
    pooled = model.encode_text(texts, prompts="long")
    torch.testing.assert_close(pooled, facets.mean(1), rtol=0, atol=1e-7)
    raw = model.encode_text(texts)
    torch.testing.assert_close(raw.norm(dim=-1), torch.ones(2))
    image_features, text_features, scale = model(torch.zeros(1, 3, model.image_size, model.image_size), texts)
    assert image_features.shape == (1, 64) and text_features.shape == (2, 64)
    torch.testing.assert_close(scale, model.logit_scale.exp())


def test_clip_baseline_loads_with_its_own_text_tower(work):
    run = work / "clip-run"
    run_flame("train", "--text-tower", "clip", "--clip-text", "clip-text-micro", "--captions", FLICKR / "captions.tsv",
              "--caption-join", "--model", "vit-micro-32", "--images", FLICKR / "captions.tsv", "--image-dir",
              FLICKR / "images", "--out", run, "--steps", "1", "--batch-size", "4", "--workers", "1",
              "--log-level", "warn")
    model, preprocess = flame.load(run)
    assert model.is_clip
    text = model.encode_text(["a dog", "a cat on a mat"], normalize=True)
    image = model.encode_image(torch.stack([preprocess(p) for p in flickr_images(2)]), normalize=True)
    assert text.shape == image.shape == (2, text.shape[1])
