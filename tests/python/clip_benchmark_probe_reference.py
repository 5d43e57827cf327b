"""CLIP_benchmark's linear probe, written out with torch alone, as the
independent side of tests/test_adamw_probe.cpp.

The procedure of clip_benchmark/metrics/linear_probe.py (evaluate): seed,
draw the few-shot permutation (all rows kept, in its order), build
torch.nn.Linear, train with AdamW (weight decay 0) on cross-entropy over a
shuffling torch DataLoader, the learning rate set before each step on a cosine
schedule without warm-up; then the test logits. Features are L2-normalised
first (its Featurizer). torch's own DataLoader and RandomSampler make the
shuffles, so the order of random draws is torch's, not the C++ side's guess.

usage: clip_benchmark_probe_reference.py INPUT.json  -> logits as JSON on stdout
"""
import json
import math
import sys

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


def main():
    spec = json.load(open(sys.argv[1]))
    train_x = F.normalize(torch.tensor(spec["train_x"], dtype=torch.float32), dim=-1)
    train_y = torch.tensor(spec["train_y"], dtype=torch.int64)
    test_x = F.normalize(torch.tensor(spec["test_x"], dtype=torch.float32), dim=-1)
    lr, epochs, batch_size = spec["lr"], spec["epochs"], spec["batch_size"]

    torch.manual_seed(spec["seed"])
    order = [int(i) for i in torch.randperm(len(train_x))]
    train_x, train_y = train_x[order], train_y[order]
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=batch_size, shuffle=True, num_workers=0)
    probe = torch.nn.Linear(train_x.shape[1], int(train_y.max()) + 1)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0)
    total = epochs * len(loader)
    for epoch in range(epochs):
        for i, (x, y) in enumerate(loader):
            step = epoch * len(loader) + i
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * (1 + math.cos(math.pi * step / total)) * lr
            optimizer.zero_grad()
            F.cross_entropy(probe(x), y).backward()
            optimizer.step()
    with torch.no_grad():
        print(json.dumps(probe(test_x).tolist()))


if __name__ == "__main__":
    main()
