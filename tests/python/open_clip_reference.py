"""An independent PyTorch reference for flame's OpenCLIP exports and imports.

Usage: open_clip_reference.py WEIGHTS CONFIG INPUTS

WEIGHTS  OpenCLIP-named .safetensors (flame export, or the released layout)
CONFIG   open_clip_config.json ({"model_cfg", "preprocess_cfg", "flame"}) or a
         bare model config (the release's FLAME-*.json)
INPUTS   .safetensors with "images" [N, 3, S, S] (preprocessed), "image_features"
         [N, D] (flame's pooled features), and for a CLIP baseline "text_ids"
         [M, T], "text_eot" [M], "text_features" [M, D]

Builds OpenCLIP's VisionTransformer (nn.MultiheadAttention blocks, as
open_clip/transformer.py) and, for FLAME, the released projector
nn.Sequential(Linear, GELU, Linear, LayerNorm) as "mm"; loads WEIGHTS with
strict=True (every tensor used, none missing); prints the largest absolute
difference from flame's features and exits 1 above --tolerance (1e-5).
Needs only python3 and torch (Debian's python3-torch): safetensors is read
with json + torch.frombuffer, no open_clip or safetensors package.
"""
import json
import struct
import sys
from collections import OrderedDict

import torch
from torch import nn

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = bytearray(data[8 + n + begin : 8 + n + end])
        out[name] = torch.frombuffer(raw, dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads, mlp_width):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict([("c_fc", nn.Linear(width, mlp_width)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(mlp_width, width))])
        )

    def forward(self, x, attn_mask=None):  # x: [T, B, W], as OpenCLIP (batch_first=False)
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, mlp_width):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads, mlp_width) for _ in range(layers)])

    def forward(self, x, attn_mask=None):
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, cfg, output_dim=None):
        super().__init__()
        width, patch = cfg["width"], cfg["patch_size"]
        grid = cfg["image_size"] // patch
        heads = width // cfg.get("head_width", 64)
        self.pool_type = cfg.get("pool_type", "tok")
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, cfg["layers"], heads, int(width * cfg.get("mlp_ratio", 4.0)))
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.empty(width, output_dim)) if output_dim else None

    def get_features(self, x):  # the released code's: every token, before ln_post
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        x = self.ln_pre(x)
        return self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)

    def pool(self, x):
        return x[:, 1:].mean(dim=1) if self.pool_type == "avg" else x[:, 0]

    def forward(self, x):  # OpenCLIP's VisionTransformer.forward
        pooled = self.pool(self.ln_post(self.get_features(x)))
        return pooled @ self.proj if self.proj is not None else pooled


class Flame(nn.Module):
    """The released CustomTextCLIP's image side: visual + mm, pooled after the projector."""

    def __init__(self, model_cfg, tensors, ln_post):
        super().__init__()
        self.visual = VisionTransformer(model_cfg["vision_cfg"], output_dim=None)
        if "visual.proj" in tensors:  # the released ViT keeps its own projection, unused by FLAME
            self.visual.proj = nn.Parameter(torch.empty(tensors["visual.proj"].shape))
        width, dim = model_cfg["mm_cfg"]["width"], model_cfg["mm_cfg"]["projector_dim"]
        hidden = tensors["mm.0.weight"].shape[0]
        self.mm = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.LayerNorm(dim))
        self.logit_scale = nn.Parameter(torch.zeros([]))
        if "logit_bias" in tensors:
            self.logit_bias = nn.Parameter(torch.zeros([]))
        self.ln_post_first = ln_post

    def encode_image(self, x):
        x = self.visual.get_features(x)
        if self.ln_post_first:
            x = self.visual.ln_post(x)
        return self.visual.pool(self.mm(x))


class Clip(nn.Module):
    """OpenCLIP's CLIP class: visual tower and the text tower at the top level."""

    def __init__(self, model_cfg, tensors):
        super().__init__()
        t = model_cfg["text_cfg"]
        self.visual = VisionTransformer(model_cfg["vision_cfg"], output_dim=model_cfg["embed_dim"])
        self.token_embedding = nn.Embedding(t["vocab_size"], t["width"])
        self.positional_embedding = nn.Parameter(torch.empty(t["context_length"], t["width"]))
        self.transformer = Transformer(t["width"], t["layers"], t["heads"], int(t["width"] * t.get("mlp_ratio", 4.0)))
        self.ln_final = nn.LayerNorm(t["width"])
        self.text_projection = nn.Parameter(torch.empty(t["width"], model_cfg["embed_dim"]))
        self.logit_scale = nn.Parameter(torch.zeros([]))
        if "logit_bias" in tensors:
            self.logit_bias = nn.Parameter(torch.zeros([]))

    def encode_image(self, x):
        return self.visual(x)

    def encode_text(self, ids, eot):  # pooled at the EOT index flame's tokenizer gives
        T = ids.shape[1]
        x = self.token_embedding(ids) + self.positional_embedding[:T]
        mask = torch.full((T, T), float("-inf")).triu_(1)
        x = self.ln_final(self.transformer(x.permute(1, 0, 2), mask).permute(1, 0, 2))
        return x[torch.arange(x.shape[0]), eot] @ self.text_projection


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    tolerance = 1e-5
    for a in sys.argv[1:]:
        if a.startswith("--tolerance="):
            tolerance = float(a.split("=", 1)[1])
    weights, config_path, inputs_path = args
    tensors = read_safetensors(weights)
    with open(config_path) as f:
        config = json.load(f)
    model_cfg = config.get("model_cfg", config)
    flame = config.get("flame")
    if "mm_cfg" in model_cfg:
        # flame's exports say whether ln_post comes first; the release skips it.
        ln_post = flame["model"]["vit"].get("ln_post", True) if flame else False
        model = Flame(model_cfg, tensors, ln_post)
        tensors = {k: v for k, v in tensors.items() if not k.startswith("text.")}  # the release may carry its LLM
    else:
        model = Clip(model_cfg, tensors)
    model.load_state_dict(tensors, strict=True)
    model.eval()
    inputs = read_safetensors(inputs_path)
    worst = 0.0
    with torch.no_grad():
        image = model.encode_image(inputs["images"])
        worst = (image - inputs["image_features"]).abs().max().item()
        if "text_ids" in inputs:
            text = model.encode_text(inputs["text_ids"], inputs["text_eot"])
            worst = max(worst, (text - inputs["text_features"]).abs().max().item())
    print(f"tensors={len(tensors)} images={image.shape[0]} max_abs_diff={worst:.3e}")
    sys.exit(0 if worst <= tolerance else 1)


if __name__ == "__main__":
    main()
