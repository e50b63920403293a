"""Embedding cache: hit, miss, corruption, shape mismatch, resume, unwritable folder."""

import json
import warnings

import pytest
import torch

from harness.results.cache import MANIFEST, CacheError, key_digest, load_or_compute, open_entry

KEY = {"model": "m", "weights": "abc", "precision": "fp32", "kind": "images"}


class Counting:
    """compute(start, end) -> {"emb": (n, 3), "tok": (n, 2, 4)}; records every call."""

    def __init__(self, fail_after: int | None = None):
        self.calls: list[tuple[int, int]] = []
        self.fail_after = fail_after

    def __call__(self, start, end):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls.append((start, end))
        idx = torch.arange(start, end, dtype=torch.float32)
        return {"emb": idx[:, None].repeat(1, 3) + torch.tensor([0.0, 0.25, 0.5]),
                "tok": idx[:, None, None].expand(-1, 2, 4).to(torch.float16)}


def expected(n):
    return Counting()(0, n)


def entry_dir(root):
    return root / key_digest(KEY)


def test_miss_then_hit_reads_back_identical_tensors(tmp_path):
    fn = Counting()
    out, info = load_or_compute(tmp_path, KEY, 10, fn, chunk_items=4)
    assert fn.calls == [(0, 4), (4, 8), (8, 10)]
    assert info.computed_items == 10 and info.cached_items == 0 and not info.hit
    ref = expected(10)
    assert torch.equal(out["emb"], ref["emb"]) and torch.equal(out["tok"], ref["tok"])
    assert out["tok"].dtype == torch.float16

    fn2 = Counting()
    out2, info2 = load_or_compute(tmp_path, KEY, 10, fn2, chunk_items=4)
    assert fn2.calls == [] and info2.hit and info2.cached_items == 10
    assert torch.equal(out2["emb"], ref["emb"]) and torch.equal(out2["tok"], ref["tok"])

    manifest = json.loads((entry_dir(tmp_path) / MANIFEST).read_text())
    assert manifest["chunk_items"] == 4 and sorted(manifest["chunks"]) == ["0", "1", "2"]
    c2 = manifest["chunks"]["2"]
    assert (c2["start"], c2["end"]) == (8, 10)
    assert c2["tensors"] == {"emb": {"shape": [2, 3], "dtype": "float32"},
                             "tok": {"shape": [2, 2, 4], "dtype": "float16"}}
    assert len(c2["sha256"]) == 64


def test_other_key_or_size_is_a_miss(tmp_path):
    load_or_compute(tmp_path, KEY, 6, Counting(), chunk_items=4)
    fn = Counting()
    load_or_compute(tmp_path, {**KEY, "precision": "bf16"}, 6, fn, chunk_items=4)
    assert fn.calls == [(0, 4), (4, 6)]
    fn = Counting()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out, _ = load_or_compute(tmp_path, KEY, 7, fn, chunk_items=4)  # same key, other item count
    assert fn.calls == [(0, 4), (4, 7)] and len(out["emb"]) == 7
    assert any("does not match" in str(x.message) for x in w)


def test_existing_entry_keeps_its_chunk_layout(tmp_path):
    load_or_compute(tmp_path, KEY, 10, Counting(), chunk_items=4)
    fn = Counting()
    _, info = load_or_compute(tmp_path, KEY, 10, fn, chunk_items=3)  # asked layout differs
    assert fn.calls == [] and info.hit


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "delete"])
def test_corrupt_chunk_is_recomputed_with_one_warning(tmp_path, damage):
    load_or_compute(tmp_path, KEY, 10, Counting(), chunk_items=4)
    chunk = entry_dir(tmp_path) / "chunk-000001.safetensors"
    blob = chunk.read_bytes()
    if damage == "truncate":
        chunk.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip_byte":
        chunk.write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))
    else:
        chunk.unlink()
    fn = Counting()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out, info = load_or_compute(tmp_path, KEY, 10, fn, chunk_items=4)
    assert fn.calls == [(4, 8)]  # only the bad chunk
    assert info.recomputed_chunks == 1 and info.cached_items == 6 and info.computed_items == 4
    assert len([x for x in w if "embedding cache" in str(x.message)]) == 1
    assert "chunk-000001" in str(w[0].message)
    assert torch.equal(out["emb"], expected(10)["emb"])
    fn = Counting()
    load_or_compute(tmp_path, KEY, 10, fn, chunk_items=4)
    assert fn.calls == []  # repaired on disk


def test_shape_mismatch_with_valid_checksum_is_not_trusted(tmp_path):
    """A chunk whose bytes match its sha256 but whose tensors disagree with the manifest (a
    writer bug, a hand edit) is recomputed."""
    import hashlib

    from safetensors.torch import save

    load_or_compute(tmp_path, KEY, 10, Counting(), chunk_items=4)
    folder = entry_dir(tmp_path)
    wrong = save({"emb": torch.zeros(3, 3), "tok": torch.zeros(3, 2, 4, dtype=torch.float16)})
    (folder / "chunk-000000.safetensors").write_bytes(wrong)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["chunks"]["0"]["sha256"] = hashlib.sha256(wrong).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(manifest))
    fn = Counting()
    with pytest.warns(UserWarning, match="shapes or dtypes"):
        out, _ = load_or_compute(tmp_path, KEY, 10, fn, chunk_items=4)
    assert fn.calls == [(0, 4)]
    assert torch.equal(out["emb"], expected(10)["emb"])


def test_garbage_manifest_means_recompute(tmp_path):
    load_or_compute(tmp_path, KEY, 5, Counting(), chunk_items=4)
    (entry_dir(tmp_path) / MANIFEST).write_text("{not json")
    fn = Counting()
    with pytest.warns(UserWarning, match="unreadable manifest"):
        out, _ = load_or_compute(tmp_path, KEY, 5, fn, chunk_items=4)
    assert fn.calls == [(0, 4), (4, 5)] and torch.equal(out["emb"], expected(5)["emb"])


def test_interrupted_fill_resumes_from_last_finished_chunk(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        load_or_compute(tmp_path, KEY, 10, Counting(fail_after=2), chunk_items=4)
    leftovers = [p.name for p in entry_dir(tmp_path).iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    fn = Counting()
    out, info = load_or_compute(tmp_path, KEY, 10, fn, chunk_items=4)
    assert fn.calls == [(8, 10)] and info.cached_items == 8 and not info.hit
    assert torch.equal(out["emb"], expected(10)["emb"])


def test_compute_must_return_one_row_per_item(tmp_path):
    with pytest.raises(CacheError, match="needs 4 rows"):
        load_or_compute(tmp_path, KEY, 8, lambda s, e: {"emb": torch.zeros(3, 2)}, chunk_items=4)


def test_memory_only_entry_writes_nothing(tmp_path):
    entry = open_entry(None, KEY, 3)
    assert entry.missing() == [(0, 3)]
    entry.put(0, 3, {"emb": torch.ones(3, 2)})
    assert torch.equal(entry.load()["emb"], torch.ones(3, 2)) and not entry.info.enabled
    assert list(tmp_path.iterdir()) == []


def test_unwritable_cache_warns_and_still_returns_results(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # mkdir under a file fails, even for root
    with pytest.warns(UserWarning, match="not writable"):
        out, info = load_or_compute(blocker / "embeddings", KEY, 5, Counting(), chunk_items=2)
    assert torch.equal(out["emb"], expected(5)["emb"]) and not info.enabled
