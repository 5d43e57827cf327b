"""An embedding store written by `flame embed`, read through memory maps."""
import json

from . import _flame
from ._paths import existing_path


class Store:
    """keys, num_facets (K), dim (D), dtype; store[i] or store["key"] -> [K, D]
    (int8 stores dequantised to float32), a copy of the row; iteration in
    store order (shard by shard). Picklable by path, so it can sit in a
    torch.utils.data.Dataset used by DataLoader workers."""

    def __init__(self, path):
        self._store = _flame.Store(existing_path(path, "embedding store"))

    def __reduce__(self):
        return (Store, (self.path,))

    path = property(lambda self: self._store.path)
    keys = property(lambda self: self._store.keys)
    num_facets = property(lambda self: self._store.num_facets)
    dim = property(lambda self: self._store.dim)
    facets = property(lambda self: self._store.facets)
    dtype = property(lambda self: self._store.dtype, doc="torch dtype of the rows returned")
    storage_dtype = property(lambda self: self._store.storage_dtype, doc='"f16", "bf16" or "int8"')
    normalized = property(lambda self: self._store.normalized)

    @property
    def manifest(self):
        return json.loads(self._store.manifest)

    def __len__(self):
        return len(self._store)

    def __getitem__(self, item):
        if isinstance(item, str):
            if self._store.index_of(item) is None:
                raise KeyError(f"{self.path}: no embedding for key {item!r}")
            return self._store.row_of_key(item)
        if isinstance(item, bool) or not hasattr(item, "__index__"):
            raise TypeError(f"a store is indexed by int or key (str), got {type(item).__name__}")
        index = item.__index__()
        n = len(self)
        if index < -n or index >= n:
            raise IndexError(f"{self.path}: index {index} out of range for {n} embeddings")
        return self._store.row(index % n)

    def __contains__(self, key):
        return isinstance(key, str) and self._store.index_of(key) is not None

    def __iter__(self):
        for i in range(len(self)):
            yield self._store.row(i)

    def items(self):
        """(key, [K, D]) in store order."""
        for i, key in enumerate(self.keys):
            yield key, self._store.row(i)

    def gather(self, indices):
        """[n, K, D] float32 rows in the order of `indices`."""
        n = len(self)
        indices = [int(i) for i in indices]
        for i in indices:
            if i < 0 or i >= n:
                raise IndexError(f"{self.path}: index {i} out of range for {n} embeddings")
        return self._store.gather(indices)

    def __repr__(self):
        return f"flame.Store({self.path!r}: {len(self)} x [{self.num_facets}, {self.dim}] {self.storage_dtype})"
