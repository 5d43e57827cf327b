"""flame.Store: the store `flame embed` wrote, read through memory maps; int8
rows equal the shard's values times its scales (read by the safetensors
package, not flame)."""
import pickle

import pytest
import torch
from safetensors.torch import load_file

import flame
from conftest import STORE_CAPTIONS, embed


def test_store_reads_what_embed_wrote(stores):
    store = flame.Store(stores["long"])
    assert len(store) == STORE_CAPTIONS and len(store.keys) == STORE_CAPTIONS
    assert (store.num_facets, store.dtype, store.storage_dtype) == (7, torch.float16, "f16")
    assert (store.manifest["count"], store.manifest["num_facets"]) == (STORE_CAPTIONS, 7)
    first = store.keys[0]
    assert torch.equal(store[0], store[first]) and torch.equal(store[-1], store[len(store) - 1])
    assert first in store and "no such key" not in store
    assert [k for k, _ in store.items()] == store.keys
    assert all(torch.equal(a, b) for a, b in zip(store, (store[i] for i in range(len(store)))))
    assert torch.equal(store.gather([2, 0]), torch.stack([store[2], store[0]]).float())
    # Rows are copies: writing into one leaves the store unchanged.
    row = store[0]
    row.fill_(0)
    assert not torch.equal(store[0], row)


def test_store_rows_equal_shard_files(stores):
    """Independent read: the shard safetensors files, in the manifest's order."""
    store = flame.Store(stores["short"])
    shards = [load_file(str(p)) for p in sorted(stores["short"].glob("shard-*.safetensors"))]
    values = torch.cat([s["embeddings"] for s in shards])
    assert torch.equal(torch.stack(list(store)), values)


def test_int8_store_round_trip(tiny_llm, work, stores):
    path = embed(tiny_llm, "long", work / "store-long-int8", "--dtype", "f32", "--store-dtype", "int8")
    store = flame.Store(path)
    assert store.storage_dtype == "int8" and store.dtype == torch.float32
    shards = [load_file(str(p)) for p in sorted(path.glob("shard-*.safetensors"))]
    values = torch.cat([s["embeddings"] for s in shards]).float()
    scales = torch.cat([s["scales"] for s in shards]).float()
    assert torch.equal(torch.stack(list(store)), values * scales.unsqueeze(-1))
    # Within half an int8 step (1/127 of the vector's largest value) plus f16's
    # rounding of the f16 store of the same captions.
    f16 = flame.Store(stores["long"])
    for key in store.keys:
        y = f16[key].float()
        bound = y.abs().amax(-1, keepdim=True) / 127 / 2 * 1.01 + y.abs() * 2**-11 + 1e-6
        assert ((store[key] - y).abs() <= bound).all(), key


def test_store_errors(stores, work):
    store = flame.Store(stores["raw"])
    with pytest.raises(IndexError):
        store[len(store)]
    with pytest.raises(IndexError):
        store[-len(store) - 1]
    with pytest.raises(KeyError):
        store["absent"]
    with pytest.raises(TypeError):
        store[1.5]
    with pytest.raises(IndexError):
        store.gather([0, len(store)])
    with pytest.raises(FileNotFoundError):
        flame.Store(work / "no-store-here")
    empty = work / "empty-store"
    empty.mkdir()
    with pytest.raises(flame.Error, match="manifest"):
        flame.Store(empty)


class StoreDataset(torch.utils.data.Dataset):
    def __init__(self, path):
        self.store = flame.Store(path)

    def __len__(self):
        return len(self.store)

    def __getitem__(self, i):
        return self.store[i]


def test_store_in_a_dataloader_with_workers(stores):
    dataset = StoreDataset(stores["long"])
    assert pickle.loads(pickle.dumps(dataset.store)).keys == dataset.store.keys
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, num_workers=2, multiprocessing_context="spawn")
    batches = torch.cat(list(loader))
    assert torch.equal(batches, torch.stack(list(dataset.store)))
