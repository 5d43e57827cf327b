"""flame from Python: FLAME's frozen-LLM text side and trained models.

    import flame
    llm = flame.LLM("models/SmolLM2-135M-Instruct.Q4_1.gguf")
    texts = flame.TextEncoder(llm, prompts="long").encode(["a dog on a beach"])  # [1, 7, D]
    model, preprocess = flame.load("demo-out/run", llm=llm.path)

The C++ core (_flame) runs on the same LibTorch as this PyTorch: tensors
cross without copies, and long calls release the GIL. See docs/python.md.
"""
import torch  # first: _flame links the LibTorch this torch loads

from . import _flame
from ._flame import Error
from .model import Model, Preprocess, load, templates
from .store import Store
from .text import LLM, TextEncoder, Tokenizer, tokenizer

__version__ = _flame.__version__

__all__ = ["Error", "LLM", "Model", "Preprocess", "Store", "TextEncoder", "Tokenizer", "load", "templates",
           "tokenizer"]
