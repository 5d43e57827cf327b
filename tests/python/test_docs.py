"""docs/python.md's notebook example, run as written: only its paths line is
this session's (the run and LLM the fixtures made). Its printed predictions
must be those of flame eval's image features (decoded by flame, not PIL)
against the same classifier."""
import contextlib
import io
import re
from pathlib import Path

import torch

import flame
from conftest import DATA, ROOT


def python_block(markdown):
    blocks = re.findall(r"```python\n(.*?)```", markdown, re.S)
    assert blocks, "docs/python.md has no python block"
    return blocks[0]


def test_docs_example_runs_as_written(run_dir, tiny_llm):
    code = python_block((ROOT / "docs" / "python.md").read_text())
    lines = code.splitlines()
    assert len([l for l in lines if l.strip()]) <= 12, "the example should stay about ten lines"
    paths = [i for i, l in enumerate(lines) if l.startswith("RUN, LLM, CIFAR = ")]
    assert len(paths) == 1
    lines[paths[0]] = f"RUN, LLM, CIFAR = {str(run_dir)!r}, {str(tiny_llm)!r}, Path({str(DATA / 'cifar10')!r})"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile("\n".join(lines), "docs/python.md", "exec"), {})
    printed = [l.split() for l in out.getvalue().splitlines()]

    model, preprocess = flame.load(run_dir, llm=tiny_llm)
    classes = (DATA / "cifar10" / "classes.txt").read_text().split()
    files = [sorted((DATA / "cifar10" / "test" / c).iterdir())[0] for c in classes]
    scores = model.encode_image(torch.stack([preprocess(f) for f in files]), normalize=True) @ \
        model.zero_shot_classifier(classes, flame.templates("photo")).T
    assert [(p[0], p[2]) for p in printed] == [(c, classes[i]) for c, i in zip(classes, scores.argmax(-1).tolist())]
