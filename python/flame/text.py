"""The frozen LLM and FLAME's text side: what `flame embed` computes."""
import os
import warnings

from . import _flame
from ._paths import existing_path, int_arg, text_list


class LLM(_flame.LLM):
    """A frozen LLM: a Hugging Face checkpoint directory or a .gguf file, its
    weights in `dtype` (bf16, f16, f32) on `device` (cpu, cuda, cuda:N), loaded once."""

    def __init__(self, path, dtype="bf16", device="cpu"):
        super().__init__(existing_path(path, "LLM checkpoint"), dtype, device)

    def __repr__(self):
        return f"flame.LLM({self.path!r}, dtype={self.dtype!r}, device={self.device!r})"


class TextEncoder(_flame.TextEncoder):
    """Captions -> [N, K, D] float32 facet embeddings, exactly as `flame embed`
    stores them: the prompt set's K facets ("long", "short", "raw" or a JSON
    file), the hidden state of `layer` (Python hidden_states numbering: -2 is
    the method's), mode "fda" (one pass), "fda-cache" or "naive", facet
    positions "separate" (the paper's FDA) or "concatenated" (the released
    code's), batched internally up to `batch_tokens` padded tokens per pass.
    `.encode` releases the GIL: Python threads encode at once."""

    def __init__(self, llm, prompts="long", layer=-2, mode="fda", facet_positions="separate", batch_tokens=8192,
                 max_tokens=0, normalize=False):
        if not isinstance(llm, _flame.LLM):
            raise TypeError(f"llm must be a flame.LLM, got {type(llm).__name__}")
        if isinstance(prompts, os.PathLike):
            prompts = os.fspath(prompts)
        super().__init__(llm, prompts, int_arg(layer, "layer", -(2**31), 2**31 - 1),
                         mode, facet_positions, int_arg(batch_tokens, "batch_tokens", 1, 2**40),
                         int_arg(max_tokens, "max_tokens", 0, 2**40), bool(normalize))

    def encode(self, texts):
        """[N, K, D] float32 on the CPU; a single str gives N = 1. A caption too
        long for max_tokens is cut, as `flame embed` cuts it, with a warning."""
        embeddings, truncated = super().encode(text_list(texts))
        if truncated:
            warnings.warn(f"{truncated} caption(s) cut to fit {self.max_tokens} tokens (prefix + one facet)",
                          stacklevel=2)
        return embeddings

    def __repr__(self):
        return (f"flame.TextEncoder(prompts={self.prompt_set!r}, K={self.num_facets}, D={self.dim}, "
                f"layer={self.layer}, mode={self.mode!r}, facet_positions={self.facet_positions!r})")


class Tokenizer(_flame.Tokenizer):
    """An LLM's tokenizer (a checkpoint directory, tokenizer.json or .gguf), as
    `flame llm tokenize` runs it: encode(text) -> ids, decode(ids) -> text."""

    def __init__(self, path):
        super().__init__(existing_path(path, "tokenizer"))

    def encode(self, text, add_special_tokens=True):
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return super().encode(text, add_special_tokens)


def tokenizer(path):
    """The tokenizer of a checkpoint directory, tokenizer.json or .gguf file."""
    return Tokenizer(path)
