"""Argument checks shared by the package: a missing file is FileNotFoundError
(Python's convention) before the C++ core sees the path."""
import errno
import os

from . import _flame


def existing_path(path, what):
    """`path` as a str; FileNotFoundError naming `what` when nothing is there."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"{what} not found", path)
    return path


def text_list(texts, what="texts"):
    """A list of str from a str or a sequence of str; TypeError naming the first
    other item, ValueError naming the first that has nothing to encode (empty,
    only whitespace or invisible characters: flame embed drops such captions)."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not hasattr(texts, "__iter__"):
        raise TypeError(f"{what} must be a str or a list of str, got {type(texts).__name__}")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] must be a str, got {type(t).__name__}")
        defect = _flame.caption_defect(t)
        if defect:
            raise ValueError(f"{what}[{i}]: {defect} (nothing but whitespace or invisible characters is empty too)"
                             if defect == "empty caption" else f"{what}[{i}]: {defect}")
    return texts


def int_arg(value, name, low, high):
    """An int in [low, high]; ValueError naming `name` otherwise (a bool is not an int here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")
    return value
