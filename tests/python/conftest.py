"""Fixtures of the Python API tests (`make test` runs them after ctest).

Everything is made by the flame binary the module was built with, once per
session: a tiny random Llama in the real Hugging Face format with the real
SmolLM tokenizer, its raw/short/long stores of 16 Flickr8k descriptions, a
2-step FLAME run on them, and its OpenCLIP export. FLAME_BUILD_DIR (default
build/) names the build; PYTHONPATH must hold BUILD/python."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("FLAME_BUILD_DIR", ROOT / "build")).resolve()
FLAME = BUILD / "flame"
SHARED = Path(os.environ.get("FLAME_SHARED_DIR", ROOT.parent / "shared")).resolve()
DATA = SHARED / "data"
FLICKR = DATA / "flickr8k"
SMOLLM2_GGUF = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
STORE_CAPTIONS = 16


def run_flame(*args, check=True):
    """The flame binary; its output on failure."""
    r = subprocess.run([str(FLAME), *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    if check and r.returncode != 0:
        raise AssertionError(f"flame {' '.join(map(str, args))} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("flame")


@pytest.fixture(scope="session")
def tiny_llm(work):
    path = work / "tiny-llm"
    run_flame("llm", "make-random", "--preset", "tiny", "--arch", "llama", "--seed", "0", "--dtype", "f32",
              "--tokenizer", SHARED / "tokenizers" / "smollm", path)
    return path


def embed(llm, prompts, out, *extra):
    run_flame("embed", "--llm", llm, "--prompts", prompts, "--input", FLICKR / "captions.tsv", "--tsv-join",
              "--limit", STORE_CAPTIONS, "--out", out, "--log-level", "warn", *extra)
    return out


@pytest.fixture(scope="session")
def stores(tiny_llm, work):
    """{"raw", "short", "long"}: f16 stores of the tiny LLM, f32 compute."""
    return {p: embed(tiny_llm, p, work / f"store-{p}", "--dtype", "f32") for p in ("raw", "short", "long")}


@pytest.fixture(scope="session")
def run_dir(stores, work):
    run = work / "run"
    run_flame("train", "--model", "vit-micro-32", "--images", FLICKR / "captions.tsv", "--image-dir",
              FLICKR / "images", "--texts", stores["raw"], "--texts", stores["short"], "--texts", stores["long"],
              "--out", run, "--steps", "2", "--batch-size", "4", "--workers", "1", "--log-level", "warn")
    return run


@pytest.fixture(scope="session")
def export_dir(run_dir, work):
    out = work / "export"
    run_flame("export", run_dir, out)
    return out

