#!/usr/bin/python3
"""The training-step peer of bench/train_step: the same model, loss and
optimizer as `flame train`, written as OpenCLIP writes them, in PyTorch from
Python.

Model: OpenCLIP's VisionTransformer (conv1 patch embedding, class token,
positional embedding, ln_pre, residual blocks of nn.MultiheadAttention and a
GELU MLP, ln_post; every LayerNorm computed in fp32 as OpenCLIP's LayerNorm
subclass does), avg pool over the patch tokens, and FLAME's projector per
patch (Linear -> GELU -> Linear -> LayerNorm into the text width).
Loss: multi-positive InfoNCE over K stored facet embeddings with a learnable
temperature (log(1/0.07)). Optimizer: AdamW, weight decay on >= 2-D weights
except the embeddings. bf16 is torch.autocast("cpu"/"cuda", bfloat16) around
the forward, as OpenCLIP's --precision amp_bf16.

The peer gets its inputs for free: one batch of random images and unit text
vectors made before timing (flame's rows include decoding real JPEGs), so it
is the stricter bar. It prints one JSON line: images/s (the median over the
timed steps, the first step untimed), peak RSS in MiB and, on CUDA, peak memory.

  train_step.py --model vit-b-16 --precision bf16 --batch 32 --steps 4 --threads 2
"""
import argparse
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]


class LayerNorm(nn.LayerNorm):
    """OpenCLIP's LayerNorm: fp32 statistics, the result cast back."""

    def forward(self, x):
        dtype = x.dtype
        return F.layer_norm(x.to(torch.float32), self.normalized_shape, self.weight, self.bias, self.eps).to(dtype)


class Block(nn.Module):
    def __init__(self, width, heads, mlp_width, sdpa):
        super().__init__()
        self.ln_1 = LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_width), nn.GELU(), nn.Linear(mlp_width, width))
        self.heads = heads
        self.sdpa = sdpa

    def attention(self, x):
        if not self.sdpa:
            return self.attn(x, x, x, need_weights=False)[0]
        # PyTorch 2.x: the fused kernels (flash / memory-efficient on CUDA).
        b, t, w = x.shape
        qkv = F.linear(x, self.attn.in_proj_weight, self.attn.in_proj_bias)
        q, k, v = qkv.view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.attn.out_proj(out.transpose(1, 2).reshape(b, t, w))

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ImageEncoder(nn.Module):
    def __init__(self, cfg, text_dim, sdpa):
        super().__init__()
        width, patch = cfg["width"], cfg["patch_size"]
        grid = cfg["image_size"] // patch
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = LayerNorm(width)
        mlp_width = int(width * cfg["mlp_ratio"])
        self.blocks = nn.ModuleList([Block(width, cfg["heads"], mlp_width, sdpa) for _ in range(cfg["layers"])])
        self.ln_post = LayerNorm(width)
        hidden = cfg.get("projector_hidden", 0) or text_dim
        self.projector = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, text_dim),
                                       LayerNorm(text_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def forward(self, images):
        x = self.conv1(images).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], 1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        for block in self.blocks:
            x = block(x)
        x = self.ln_post(x)
        return self.projector(x[:, 1:]).mean(1)  # avg pool of the projected patches


def multi_positive_infonce(image, text, scale):
    n, k, _ = text.shape
    logits = torch.einsum("id,jkd->ijk", image, text) * scale
    targets = torch.arange(n, device=image.device)
    t2i = F.cross_entropy(logits.permute(1, 2, 0).reshape(n * k, n), targets.repeat_interleave(k))
    i2t = F.cross_entropy(logits.permute(2, 0, 1).reshape(k * n, n), targets.repeat(k))
    return (t2i + i2t) / 2


def parameter_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        embedding = name.endswith("class_embedding") or name.endswith("positional_embedding")
        (decay if p.dim() >= 2 and not embedding else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="vit-b-16", help="a preset in configs/models or a JSON file")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4, help="steps in all; the first is not timed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--text-dim", type=int, default=576)
    ap.add_argument("--facets", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sdpa", action="store_true", help="F.scaled_dot_product_attention (PyTorch >= 2.0)")
    ap.add_argument("--fused-adamw", action="store_true", help="AdamW(fused=True) (PyTorch >= 2.0, CUDA)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.steps < 2:
        ap.error("--steps must be at least 2 (the first is not timed)")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    path = Path(args.model)
    if not path.is_file():
        path = ROOT / "configs" / "models" / f"{args.model}.json"
    cfg = json.loads(path.read_text())
    device = torch.device(args.device)
    model = ImageEncoder(cfg, args.text_dim, args.sdpa).to(device)
    extra = {"fused": True} if args.fused_adamw else {}
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.2), lr=5e-4, betas=(0.9, 0.98), eps=1e-6, **extra)
    size = cfg["image_size"]
    images = torch.randn(args.batch, 3, size, size, device=device)
    text = F.normalize(torch.randn(args.batch, args.facets, args.text_dim, device=device), dim=-1)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    times = []
    for _ in range(args.steps):
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            image = model(images)
        image = F.normalize(image.float(), dim=-1)
        loss = multi_positive_infonce(image, text, model.logit_scale.exp().clamp(max=100))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        sync()
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[1:])
    out = {"images_per_s": args.batch / step, "step_seconds": step, "loss": float(loss),
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "torch": torch.__version__}
    if device.type == "cuda":
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
