"""A copy of the embedding cache with every stored value moved at float32 rounding level.

Another CPU's kernels (AVX-512 or not, another BLAS blocking) give embeddings that differ in
their last bits. Running a suite again from a perturbed copy of its cache shows which scores
such a difference moves, without needing that CPU: every floating tensor of every chunk is
multiplied by ``1 + rel * N(0, 1)`` (seeded per entry and chunk), and the manifest gets the
new bytes' sha256, so the cache serves the perturbed chunks as valid ones.

    >>> import tempfile, torch
    >>> from harness.results.cache import load_or_compute
    >>> src, dst = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = load_or_compute(src, {"m": 1}, 3, lambda s, e: {"embedding": torch.ones(e - s, 4)}, chunk_items=2)
    >>> stats = perturb_cache(src, dst, rel=1e-6, seed=0)
    >>> (stats.entries, stats.chunks, stats.values), 0 < stats.max_rel < 1e-5
    ((1, 2, 12), True)
    >>> out, info = load_or_compute(dst, {"m": 1}, 3, lambda s, e: 1 / 0, chunk_items=2)
    >>> info.cached_items, bool((out["embedding"] != 1).any())
    (3, True)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness.results.cache import MANIFEST


@dataclass
class PerturbStats:
    entries: int = 0   # cache entries copied
    chunks: int = 0    # chunk files perturbed
    values: int = 0    # floating values multiplied
    max_rel: float = 0.0  # largest relative change actually stored (after float32 rounding)


def _generator(seed: int, entry: str, index: str):
    import torch

    digest = hashlib.sha256(f"{seed}:{entry}:{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def perturb_cache(src: str | Path, dst: str | Path, rel: float = 1e-6, seed: int = 0) -> PerturbStats:
    """Copy the embedding cache ``src`` (an ``embeddings`` folder) to ``dst``, perturbed."""
    import torch
    from safetensors.torch import load, save

    src, dst, stats = Path(src), Path(dst), PerturbStats()
    for manifest_path in sorted(src.glob(f"*/{MANIFEST}")):
        entry = manifest_path.parent
        out = dst / entry.name
        shutil.copytree(entry, out, dirs_exist_ok=True)
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        for index, meta in manifest.get("chunks", {}).items():
            tensors = load((entry / meta["file"]).read_bytes())
            g = _generator(seed, entry.name, index)
            for name, t in sorted(tensors.items()):
                if not t.is_floating_point():
                    continue
                moved = (t.double() * (1 + rel * torch.randn(t.shape, generator=g, dtype=torch.float64))).to(t.dtype)
                nonzero = t != 0
                if nonzero.any():
                    change = ((moved - t).double().abs() / t.double().abs())[nonzero].max()
                    stats.max_rel = max(stats.max_rel, float(change))
                tensors[name] = moved.contiguous()
                stats.values += t.numel()
            blob = save(tensors)
            (out / meta["file"]).write_bytes(blob)
            meta["sha256"] = hashlib.sha256(blob).hexdigest()
            stats.chunks += 1
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        stats.entries += 1
    return stats
