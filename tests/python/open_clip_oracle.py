"""OpenCLIP itself (PyPI's open_clip_torch) loads flame's OpenCLIP exports and
the released FLAME layout and must give flame's features.

Usage: open_clip_oracle.py WEIGHTS CONFIG INPUTS [--images=LIST] [--tolerance=1e-5]

WEIGHTS  OpenCLIP-named .safetensors (flame export, or the released layout)
CONFIG   open_clip_config.json ({"model_cfg", "preprocess_cfg", "flame"}) or a
         bare model config (the release's FLAME-*.json)
INPUTS   .safetensors with "images" [N, 3, S, S] (flame's preprocessing),
         "image_features" [N, D] (flame's pooled features), optionally
         "control_image_features" [N, D] (a slightly changed model's: must
         differ by more than the tolerance), and for a CLIP baseline
         "text_ids" [M, T] (flame's tokenizer's layout) and "text_features" [M, D]
LIST     a text file naming the N image files, one a line: OpenCLIP's eval
         transform of the export's preprocess_cfg must give flame's "images":
         within --tolerance on the decoded pixels as a uint8 tensor
         (torchvision resizes tensors with torch's antialiased bicubic and
         rounds, as flame does), within --pil-steps (5) steps of 1/255 on PIL
         images (Pillow's
         fixed-point two-pass bicubic rounds to 8 bits between its passes: about
         one value in ten is a step or more off flame's, a few up to 4)

CLIP baseline: open_clip.create_model_and_transforms("local-dir:DIR"), the
path OpenCLIP documents for a folder holding open_clip_config.json and
open_clip_model.safetensors; it loads the weights strict=True itself.
encode_image and encode_text (the text tower pooling as the export's text_cfg
says) are compared with flame's features.

FLAME: OpenCLIP has no class for a model whose text side is an LLM (the
release's model_cfg keys mm_cfg and custom_text are its own fork's:
create_model stops at the missing text_cfg). The image side is built from the
package: its VisionTransformer from model_cfg.vision_cfg (CLIPVisionCfg
checks every key), without the visual.proj FLAME never uses unless the file
has one (the release does), and the released projector
nn.Sequential(Linear, GELU, Linear, LayerNorm) as `mm`; the file is loaded
into them strict=True (text.*, the release's LLM, left out). The image
feature is the projector on every output token of OpenCLIP's last block
(after its ln_post unless flame's config or the release says none), pooled
as vision_cfg.pool_type (avg: the patch tokens' mean; tok: the class token).

Prints the largest absolute differences; exits 1 above --tolerance (1e-5) for
features, above the bounds above for preprocessing, or when the control is
within the tolerance.
"""
import json
import os
import sys

import torch
from torch import nn

import open_clip
from open_clip.factory import load_state_dict
from open_clip.model import _build_vision_tower
from open_clip.transform import MaybeToTensor, PreprocessCfg, image_transform_v2, merge_preprocess_dict


class FlameImageSide(nn.Module):
    """The released FLAME model's image side: OpenCLIP's visual tower and `mm`."""

    def __init__(self, model_cfg, tensors, ln_post):
        super().__init__()
        self.visual = _build_vision_tower(model_cfg["embed_dim"], model_cfg["vision_cfg"])
        if "visual.proj" not in tensors:
            self.visual.proj = None  # as OpenCLIP's prune_intermediate_layers(prune_head=True)
        width = model_cfg["mm_cfg"]["width"]
        hidden = tensors["mm.0.weight"].shape[0]
        dim = model_cfg["mm_cfg"]["projector_dim"]
        self.mm = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.LayerNorm(dim))
        self.logit_scale = nn.Parameter(torch.zeros([]))
        self.logit_bias = nn.Parameter(torch.zeros([])) if "logit_bias" in tensors else None
        self.ln_post = ln_post

    def encode_image(self, x):
        out = self.visual.forward_intermediates(
            x, indices=1, normalize_intermediates=self.ln_post, output_fmt="NLC", output_extra_tokens=True
        )
        tokens = torch.cat([out["image_intermediates_prefix"][-1], out["image_intermediates"][-1]], dim=1)
        y = self.mm(tokens)
        return y[:, 1:].mean(dim=1) if self.visual.pool_type == "avg" else y[:, 0]


def option(name, default):
    for a in sys.argv[1:]:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return default


def main():
    weights, config_path, inputs_path = [a for a in sys.argv[1:] if not a.startswith("--")]
    tolerance = float(option("tolerance", "1e-5"))
    # Pillow's resampling vs flame's, in steps of 1/255 (see below).
    pixel_steps = float(option("pil-steps", "5"))
    images_list = option("images", None)
    with open(config_path) as f:
        config = json.load(f)
    model_cfg = config.get("model_cfg", config)
    inputs = load_state_dict(inputs_path)
    report = []
    ok = True

    if "mm_cfg" in model_cfg:
        tensors = {k: v for k, v in load_state_dict(weights).items() if not k.startswith("text.")}
        flame = config.get("flame")
        ln_post = flame["model"]["vit"].get("ln_post", True) if flame else False  # the release skips it
        model = FlameImageSide(model_cfg, tensors, ln_post)
        model.load_state_dict(tensors, strict=True)
        kind = "FLAME (OpenCLIP VisionTransformer + mm)"
    else:
        folder = os.path.dirname(os.path.abspath(weights))
        if os.path.dirname(os.path.abspath(config_path)) != folder:
            sys.exit("a CLIP baseline export is loaded as its folder: weights and config must be together")
        model = open_clip.create_model(f"local-dir:{folder}", device="cpu", precision="fp32")
        tensors = load_state_dict(weights)
        own = model.state_dict()
        assert set(own) == set(tensors), sorted(set(own) ^ set(tensors))  # strict load, checked again
        kind = f"CLIP baseline ({type(model).__name__}, text pool {model.text_pool_type})"
    model.eval()

    with torch.no_grad():
        image = model.encode_image(inputs["images"])
        diff = (image - inputs["image_features"]).abs().max().item()
        report.append(f"image_max_abs_diff={diff:.3e}")
        ok &= diff <= tolerance
        if "control_image_features" in inputs:  # features of a changed model: must be told apart
            diff = (image - inputs["control_image_features"]).abs().max().item()
            rejected = diff > tolerance
            report.append(f"control_{'rejected' if rejected else 'ACCEPTED'}={diff:.3e}")
            ok &= rejected
        if "text_ids" in inputs:
            diff = (model.encode_text(inputs["text_ids"]) - inputs["text_features"]).abs().max().item()
            report.append(f"text_max_abs_diff={diff:.3e}")
            ok &= diff <= tolerance

    if images_list:
        import numpy as np
        from PIL import Image

        cfg = PreprocessCfg(**merge_preprocess_dict(PreprocessCfg(), config["preprocess_cfg"]))
        preprocess = image_transform_v2(cfg, is_train=False)
        with open(images_list) as f:
            files = [line.strip() for line in f if line.strip()]
        pil = [Image.open(p).convert("RGB") for p in files]
        # The transform on the decoded pixels as a uint8 tensor: torchvision resizes
        # tensors with torch's antialiased bicubic and rounds to 8 bits, as flame
        # does; MaybeToTensor passes tensors through, so its 1/255 scaling (to_tensor's
        # for 8-bit images) is done here.
        def on_uint8(im):
            x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
            for t in preprocess.transforms:
                x = x.float() / 255 if isinstance(t, MaybeToTensor) else t(x)
            return x

        diff = (torch.stack([on_uint8(im) for im in pil]) - inputs["images"]).abs().max().item()
        step = 1 / 255 / min(cfg.std)
        report.append(f"preprocess_tensor_max_abs_diff={diff:.3e} ({diff / step:.2f} steps of 1/255)")
        ok &= diff <= tolerance
        # The transform on the PIL images, as OpenCLIP's users run it: Pillow resamples
        # in fixed point, rounding between its two passes; flame's resize is torch's.
        diff = (torch.stack([preprocess(im) for im in pil]) - inputs["images"]).abs()
        report.append(
            f"preprocess_pil_max_abs_diff={diff.max().item():.3e} ({diff.max().item() / step:.2f} steps),"
            f" {(diff > 0.5 * step).float().mean().item() * 100:.1f}% of values off by a step or more"
        )
        ok &= diff.max().item() <= pixel_steps * step

    print(f"{kind}: tensors={len(tensors)} loaded strict=True, images={inputs['images'].shape[0]} " + " ".join(report))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
