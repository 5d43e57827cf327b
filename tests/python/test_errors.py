"""Bad input from Python raises a Python exception carrying flame's message;
none aborts the interpreter (each case also runs in a child interpreter that
must exit normally)."""
import subprocess
import sys
import textwrap

import pytest
import torch

import flame
from conftest import FLICKR, SHARED, run_flame


def test_exception_types(run_dir, tiny_llm, work):
    with pytest.raises(FileNotFoundError, match="model not found"):
        flame.load(work / "no-such-run")
    with pytest.raises(FileNotFoundError):
        flame.LLM(work / "no-such-llm")
    not_a_run = work / "not-a-run"
    not_a_run.mkdir(exist_ok=True)
    with pytest.raises(flame.Error):
        flame.load(not_a_run)
    with pytest.raises(ValueError, match="'f64'"):
        flame.LLM(tiny_llm, dtype="f64")
    with pytest.raises(ValueError, match="cuda"):
        flame.LLM(tiny_llm, device="tpu")
    llm = flame.LLM(tiny_llm, dtype="f32")
    with pytest.raises(ValueError, match="unknown mode"):
        flame.TextEncoder(llm, mode="fast")
    with pytest.raises(ValueError):
        flame.TextEncoder(llm, prompts="no-such-prompt-set")
    with pytest.raises(ValueError):
        flame.TextEncoder(llm, layer=1000)
    with pytest.raises(ValueError, match="max_tokens"):
        flame.TextEncoder(llm, max_tokens=-1)
    with pytest.raises(ValueError, match="max-tokens"):  # past the model's context: the core's check
        flame.TextEncoder(llm, max_tokens=10**9)
    with pytest.raises(TypeError):
        flame.TextEncoder("not an llm")
    encoder = flame.TextEncoder(llm, prompts="raw")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        encoder.encode(["a caption", 3])
    with pytest.raises(TypeError):
        encoder.encode(None)
    for nothing in ("", "   ", "\u200b\x00"):  # flame embed drops these; an empty prompt is no caption
        with pytest.raises(ValueError, match=r"texts\[1\]"):
            encoder.encode(["a caption", nothing])
    with pytest.warns(UserWarning, match=r"1 caption\(s\) cut"):
        assert encoder.encode(["word " * 5000]).shape[0] == 1
    for bad in (10**30, -1, 0):
        with pytest.raises(ValueError, match="batch_tokens"):
            flame.TextEncoder(llm, batch_tokens=bad)
    with pytest.raises(TypeError, match="layer"):
        flame.TextEncoder(llm, layer=1.5)

    model, preprocess = flame.load(run_dir)  # no LLM: images only
    with pytest.raises(flame.Error, match="needs the frozen LLM"):
        model.encode_text(["a dog"])
    S = model.image_size
    for bad in (torch.tensor(1.0), torch.zeros(3, S, S), torch.zeros(1, 3, S + 1, S), torch.zeros(1, 1, S, S)):
        with pytest.raises(ValueError, match=r"\[B, 3,"):
            model.encode_image(bad)
    with pytest.raises(ValueError, match="floating-point"):
        model.encode_image(torch.zeros(1, 3, S, S, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        model.encode_image(torch.full((1, 3, S, S), float("nan")))
    with pytest.raises(TypeError):
        model.encode_image([[0.0]])
    assert model.encode_image(torch.zeros(0, 3, S, S)).shape[0] == 0
    with pytest.raises(flame.Error):
        preprocess(b"not an image")
    with pytest.raises(ValueError, match="uint8"):
        preprocess(torch.zeros(4, 4, 3))
    with pytest.raises(ValueError):
        preprocess(torch.zeros(0, 4, 3, dtype=torch.uint8))
    with pytest.raises(TypeError):
        preprocess(12)
    with pytest.raises(ValueError, match="no template list"):
        flame.templates("nope")


def test_messages_name_the_export_not_its_temporary_run(export_dir):
    model, _ = flame.load(export_dir)
    with pytest.raises(flame.Error, match=str(export_dir)):
        model.encode_text(["a dog"])


def test_model_of_another_llm_is_refused(run_dir, work):
    other = work / "other-llm"
    run_flame("llm", "make-random", "--preset", "tiny", "--arch", "llama", "--seed", "7", "--dtype", "f32",
              "--tokenizer", SHARED / "tokenizers" / "smollm", other)
    with pytest.raises(flame.Error, match="LLM"):
        flame.load(run_dir, llm=other)
    with pytest.warns(UserWarning):
        model, _ = flame.load(run_dir, llm=other, allow_llm_mismatch=True)
    assert model.encode_text(["a dog"]).shape == (1, 64)


def test_errors_never_abort_the_interpreter(run_dir, tiny_llm):
    """The same bad calls in a fresh interpreter, which must reach its last line."""
    code = textwrap.dedent(f"""
        import torch, flame
        bad = [lambda: flame.load({str(run_dir)!r})[0].encode_image(torch.tensor(1.0)),
               lambda: flame.LLM({str(tiny_llm)!r}, dtype="f64"),
               lambda: flame.Store({str(FLICKR)!r}),
               lambda: flame.tokenizer({str(tiny_llm)!r}).decode([10**9]),
               lambda: flame.Preprocess(0)(torch.zeros(2, 2, 3, dtype=torch.uint8)),
               lambda: flame.Preprocess(8)(b"")]
        for call in bad:
            try:
                call()
            except Exception as e:
                print(type(e).__name__)
        print("survived")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split()[-1] == "survived", r.stdout + r.stderr
    assert r.stdout.split()[:-1] == ["Error"] * 6, r.stdout  # flame.Error, a ValueError
