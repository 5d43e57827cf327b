"""CLIP_benchmark's own metric code (PyPI's clip-benchmark) on flame's features.

Usage: clip_benchmark_oracle.py SPEC.json FEATURES.safetensors OUT.json

SPEC      {"classification": {"classnames", "templates", "labels", "texts"},
           "retrieval": {"captions": [[caption, ...] per image], "texts"},
           "batch_size": images per batch}
FEATURES  flame's features: "classification_images" [N, D],
          "classification_texts" [len(texts), D], "retrieval_images" [M, D],
          "retrieval_texts" [len(texts), D]; row i of a *_texts tensor is the
          feature of SPEC's texts[i]
OUT       {"zeroshot_classification": {acc1, acc5, mean_per_class_recall},
           "zeroshot_retrieval": {image_retrieval_recall@k, text_retrieval_recall@k},
           "smallest_gap": ...}

A wrapper model stands for flame: encode_image(indices) returns flame's image
features, encode_text(ids) the features of the texts the "tokenizer" was
given (each text string looked up among SPEC's texts, so a prompt that flame
did not encode, or formatted differently from CLIP_benchmark's
template.format(c=classname), raises KeyError). Everything else is
CLIP_benchmark's: clip_benchmark.metrics.zeroshot_classification.evaluate
(its classifier: per-template normalise, mean, normalise; 100 * logits; acc1 and
acc5 from topk, acc5 only with 5 or more classes; mean_per_class_recall from
scikit-learn's balanced_accuracy_score of the argmax) and
clip_benchmark.metrics.zeroshot_retrieval.evaluate (recall@1/5/10 both ways),
on CPU without autocast. One line of it is mended for NumPy 2.4 (below).

"smallest_gap" is the smallest difference between a correct item's score and
a wrong one's in any row (classification logits / 100, retrieval similarities
both ways), the comparisons that decide the metrics: ties or near-ties (below
~1e-6) would make the comparison depend on float rounding and on torch.topk's
order among equal scores, which is unspecified.
"""
import json
import os
import sys
from types import SimpleNamespace

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from open_clip.factory import load_state_dict  # noqa: E402 (safetensors reading)

from clip_benchmark.metrics import zeroshot_classification, zeroshot_retrieval  # noqa: E402


def numpy2_accuracy():
    """clip-benchmark 1.6.2's accuracy() ends in float(<array of shape (1,)>), a
    TypeError since NumPy 2.4 (the conversion of arrays with ndim > 0 to a
    scalar, deprecated in 1.25, was removed). Its own source, with .item() put
    in that one place; fails if the line is not there (a fixed release)."""
    import inspect

    source = inspect.getsource(zeroshot_classification.accuracy)
    broken = "keepdim=True).cpu().numpy())"
    if broken not in source:
        raise RuntimeError("clip_benchmark's accuracy() changed: drop numpy2_accuracy()")
    namespace = dict(vars(zeroshot_classification))
    exec(source.replace(broken, "keepdim=True).cpu().numpy().item())"), namespace)
    return namespace["accuracy"]


class FlameFeatures(torch.nn.Module):
    def __init__(self, images, texts):
        super().__init__()
        self.images, self.texts = images, texts

    def encode_image(self, indices):
        return self.images[indices]

    def encode_text(self, ids):
        return self.texts[ids]


def tokenizer_for(texts):
    index = {t: i for i, t in enumerate(texts)}
    return lambda batch: torch.tensor([index[t] for t in batch], dtype=torch.int64)


class Loader:
    """What the two evaluate functions read of a DataLoader: batches and dataset.classes."""

    def __init__(self, targets, batch_size, classes=None):
        self.targets, self.batch_size = targets, batch_size
        self.dataset = SimpleNamespace(classes=classes)

    def __iter__(self):
        for start in range(0, len(self.targets), self.batch_size):
            end = min(start + self.batch_size, len(self.targets))
            targets = self.targets[start:end]
            yield torch.arange(start, end), (torch.tensor(targets) if self.dataset.classes else targets)


def smallest_gap(scores, positive):
    """The smallest |correct - wrong| score difference of any row: the
    comparisons that decide the rank of a correct item."""
    gaps = [(s[p][:, None] - s[~p][None, :]).abs().min() for s, p in zip(scores, positive)]
    return min(gaps).item()


def main():
    spec_path, features_path, out_path = sys.argv[1:4]
    with open(spec_path) as f:
        spec = json.load(f)
    features = load_state_dict(features_path)
    batch_size = spec.get("batch_size", 8)
    out = {}
    gaps = []

    try:
        zeroshot_classification.accuracy(torch.zeros(1, 1), torch.zeros(1, dtype=torch.int64))
    except TypeError:
        zeroshot_classification.accuracy = numpy2_accuracy()
        out["patched"] = "clip_benchmark accuracy(): float(array) -> float(array.item()) for NumPy 2.4"

    c = spec["classification"]
    model = FlameFeatures(features["classification_images"], features["classification_texts"])
    out["zeroshot_classification"] = zeroshot_classification.evaluate(
        model,
        Loader(c["labels"], batch_size, classes=c["classnames"]),
        tokenizer_for(c["texts"]),
        c["classnames"],
        c["templates"],
        device="cpu",
        amp=False,
    )
    classifier = zeroshot_classification.zero_shot_classifier(
        model, tokenizer_for(c["texts"]), c["classnames"], c["templates"], "cpu", amp=False
    )
    logits = F.normalize(model.images, dim=-1) @ classifier
    labels = torch.tensor(c["labels"])
    gaps.append(smallest_gap(logits, F.one_hot(labels, logits.shape[1]).bool()))

    r = spec["retrieval"]
    model = FlameFeatures(features["retrieval_images"], features["retrieval_texts"])
    out["zeroshot_retrieval"] = zeroshot_retrieval.evaluate(
        model,
        Loader(r["captions"], batch_size),
        tokenizer_for(r["texts"]),
        device="cpu",
        amp=False,
        recall_k_list=[1, 5, 10],
    )
    sim = F.normalize(model.texts, dim=-1) @ F.normalize(model.images, dim=-1).t()
    image_of = torch.tensor([i for i, captions in enumerate(r["captions"]) for _ in captions])
    positive = F.one_hot(image_of, sim.shape[1]).bool()
    gaps += [smallest_gap(sim, positive), smallest_gap(sim.t(), positive.t())]
    out["smallest_gap"] = min(gaps)

    for metrics in (out["zeroshot_classification"], out["zeroshot_retrieval"]):
        for k, v in list(metrics.items()):
            if v != v:  # NaN (acc5 with fewer than 5 classes): JSON has none
                del metrics[k]
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
