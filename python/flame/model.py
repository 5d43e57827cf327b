"""A trained FLAME (or CLIP baseline) model, held as OpenCLIP users hold one:

    model, preprocess = flame.load("run", llm="models/llm")
    image = model.encode_image(preprocess(Image.open("cat.jpg")).unsqueeze(0))
    text = model.encode_text(["a photo of a cat"])

Loaded exactly as `flame eval` loads it: the same image features and, for a
FLAME model, text encoded as its training stores were (the checkpoint's LLM
identity checked, its layer, prompt sets, facet positions)."""
import json
import os
import tempfile
import warnings

import torch

from . import _flame
from ._paths import existing_path, text_list

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = "open_clip_model.safetensors"


class Preprocess:
    """flame eval's image transform: resize the short side to `image_size`
    (antialiased bicubic), centre crop, CLIP's mean and std -> [3, S, S] float32.
    Takes a PIL image, a path or the encoded bytes of a JPEG/PNG/WebP (decoded
    by flame's own decoders: the very pixels `flame eval` sees), or a uint8
    [H, W, 3] RGB tensor."""

    def __init__(self, image_size):
        self.image_size = int(image_size)

    def __call__(self, image):
        if isinstance(image, (str, os.PathLike)):
            path = existing_path(image, "image")
            with open(path, "rb") as f:
                pixels = _flame.decode_image(f.read(), path)
        elif isinstance(image, (bytes, bytearray, memoryview)):
            pixels = _flame.decode_image(bytes(image), "image bytes")
        elif isinstance(image, torch.Tensor):
            pixels = image
        elif hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image, without importing PIL
            import numpy as np
            pixels = torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8, copy=True))
        else:
            raise TypeError(f"preprocess takes a PIL image, a path, image bytes or a uint8 [H, W, 3] tensor, "
                            f"got {type(image).__name__}")
        return _flame.transform_pixels(pixels, self.image_size)

    def __repr__(self):
        return f"flame.Preprocess(image_size={self.image_size})"


class Model:
    """encode_image(images [B, 3, S, S]) -> [B, D]; encode_text(texts) -> [N, D];
    logit_scale, logit_bias; forward(image, text) as OpenCLIP's CLIP.forward.
    Inference only: features come without gradients."""

    def __init__(self, path, llm=None, dtype="bf16", device="cpu", batch_size=64, allow_llm_mismatch=False):
        llm_path = "" if llm is None else _llm_path(llm)
        self._model = _flame.Model(existing_path(path, "model"), llm_path, dtype, device, batch_size,
                                   allow_llm_mismatch)
        for w in self._model.warnings:
            warnings.warn(w, stacklevel=3)

    path = property(lambda self: self._model.path, doc="what it was loaded from (an export, not its temporary run)")
    is_clip = property(lambda self: self._model.is_clip, doc="a CLIP baseline (its own text tower)")
    image_size = property(lambda self: self._model.image_size)

    @property
    def logit_scale(self):
        """log of the learned temperature (OpenCLIP's: logits = logit_scale.exp() * cosine)."""
        return self._model.logit_scale

    @property
    def logit_bias(self):
        """The sigmoid loss's learned bias, None for a run trained with InfoNCE (as OpenCLIP)."""
        return self._model.logit_bias if self._model.sigmoid_loss else None

    def eval(self):
        return self

    def encode_image(self, images, normalize=False):
        """[B, D] float32 pooled image features of preprocessed images [B, 3, S, S]."""
        _require_tensor(images, "images")
        return self._model.encode_image(images, normalize, False)

    def encode_image_visual(self, images, normalize=False):
        """[B, W] the ViT's pooled output before the projector (the method's linear-probe features)."""
        _require_tensor(images, "images")
        return self._model.encode_image(images, normalize, True)

    def encode_text(self, texts, normalize=False, prompts="raw", pooling="mean_cosine"):
        """[N, D] text features. FLAME: each text through the prompt set playing
        `prompts` ("raw": one facet, as zero-shot uses; "short", "long"), its K
        unit facets pooled: "mean_cosine" (their mean: its dot product with a
        unit image feature is eval's mean cosine) or "mean_embedding" (the
        normalised mean of the raw facet vectors). CLIP baseline: its text tower."""
        return self._model.encode_text(text_list(texts), prompts, pooling, normalize)

    def encode_text_facets(self, texts, prompts="long"):
        """[N, K, D] unit facet vectors, as eval scores long-caption retrieval."""
        return self._model.encode_text_facets(text_list(texts), prompts, True)

    def text_encoding(self, prompts="raw"):
        """How texts are encoded for `prompts`: {"prompt_set", "layer", "facet_positions"}."""
        return json.loads(self._model.text_encoding(prompts))

    def zero_shot_classifier(self, class_names, templates):
        """[C, D] class vectors as `flame eval` builds them: each name in each
        template ("a photo of a {}.") through the raw set, unit vectors averaged
        over the templates and normalised."""
        return self._model.zero_shot_classifier(text_list(class_names, "class_names"),
                                                text_list(templates, "templates"))

    def forward(self, image=None, text=None):
        """(image_features, text_features, logit_scale.exp()), features normalised; either may be None."""
        image_features = self.encode_image(image, normalize=True) if image is not None else None
        text_features = self.encode_text(text, normalize=True) if text is not None else None
        return image_features, text_features, self.logit_scale.exp()

    __call__ = forward

    def __repr__(self):
        kind = "CLIP baseline" if self.is_clip else "FLAME"
        return f"flame.Model({self.path!r}, {kind}, image_size={self.image_size})"


def load(path, llm=None, dtype="bf16", device="cpu", batch_size=64, allow_llm_mismatch=False):
    """(model, preprocess) of a run directory (its latest checkpoint), a
    checkpoint directory or an OpenCLIP export (`flame export --format
    open_clip`: a folder with open_clip_config.json), as OpenCLIP's
    create_model_and_transforms. `llm`: the frozen LLM the model was trained
    against (a path or a flame.LLM); without it only images can be encoded."""
    path = existing_path(path, "model")
    if os.path.isfile(os.path.join(path, OPEN_CLIP_CONFIG)):
        model = _load_export(path, llm, dtype, device, batch_size, allow_llm_mismatch)
    else:
        model = Model(path, llm, dtype, device, batch_size, allow_llm_mismatch)
    return model, Preprocess(model.image_size)


def _load_export(path, llm, dtype, device, batch_size, allow_llm_mismatch):
    """An export, imported as `flame import` would (its weights and text-side
    record checked) into a temporary run, loaded, and the run removed."""
    with tempfile.TemporaryDirectory(prefix="flame-load-") as tmp:
        run = os.path.join(tmp, "run")
        _flame.import_open_clip(os.path.join(path, OPEN_CLIP_WEIGHTS), os.path.join(path, OPEN_CLIP_CONFIG), run,
                                "" if llm is None else _llm_path(llm))
        model = Model(run, llm, dtype, device, batch_size, allow_llm_mismatch)
    model._model.path = path  # messages name the export
    return model


def templates(name="photo"):
    """The zero-shot templates flame's benchmarks use: "photo" (CIFAR-10's) or
    "imagenet-openai", one "{}" for the class name each."""
    path = os.path.join(_flame.config_dir("benchmarks"), "templates", f"{name}.txt")
    if not os.path.isfile(path):
        raise ValueError(f"no template list {name!r} (looked for {path})")
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def _llm_path(llm):
    if isinstance(llm, _flame.LLM):
        return llm.path
    return existing_path(llm, "LLM checkpoint")


def _require_tensor(x, what):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor [B, 3, S, S], got {type(x).__name__}")
