"""Encoding loops shared by the tasks: batched, measured, cached, and backing off on OOM.

Both loops go through an embedding-cache entry (memory-only when the cache is off): the
chunks already on disk are read back, only the missing ones are encoded, each stored as it
finishes. Batches never straddle a chunk, so a resumed encode batches items as a fresh one
does. On CUDA out-of-memory a batch is split in halves and retried, down to one item; the
smaller size then holds for the rest of the stage and is recorded (never silent).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.core import progress
from harness.core.interfaces import model_facts
from harness.core.measure import Stage
from harness.datasets.base import ImageSet
from harness.models import text_limits
from harness.parallel import shard_plan
from harness.results.cache import (
    DEFAULT_CHUNK_ITEMS,
    CacheEntry,
    identity_of,
    open_entry,
    texts_digest,
)

EMBEDDING = "embedding"  # tensor name of an embedding chunk
_UNITS = {"image_encode": "img", "text_encode": "text"}  # what a stage's progress bar counts


@dataclass(frozen=True)
class EncodeCache:
    """What the runner tells the encode loops about caching: where entries live (``root``
    None: memory only) and the identity of the run's numbers (model weights, precision,
    device type, dataset) that, with the items themselves, keys every entry."""

    root: str | None
    identity: dict[str, Any] = field(default_factory=dict)
    chunk_items: int = DEFAULT_CHUNK_ITEMS
    digest_dir: str | None = None  # the run's cache_dir: the image-digest table its run key read


@dataclass(frozen=True)
class EncodeOptions:
    batch_size: int = 64
    device: str = "cpu"
    num_workers: int = 0
    warmup_batches: int = 1
    cache: EncodeCache | None = None  # None: no cache (benchmarks, direct calls)
    shard_gallery: bool = False       # a sharded run: each rank scores a slice of the gallery


class _Pixels:
    """Map-style dataset: index -> preprocessed image tensor (runs inside loader workers)."""

    def __init__(self, images: ImageSet, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images.load(i))


def _oom_error():
    import torch

    return getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class Backoff:
    """Runs a batch function, halving the batch on CUDA out-of-memory (down to one item).
    ``size`` is the batch size in force; ``events`` counts the halvings."""

    def __init__(self, batch_size: int, device: str):
        self.requested = self.size = batch_size
        self.events = 0
        self.device = device

    def run(self, fn: Callable[[Any], Any], batch, n: int, stage: Stage) -> list:
        outs, i = [], 0
        while i < n:
            size = min(self.size, n - i)
            part = batch[i:i + size]
            failed = False
            try:
                with stage.batch(size):
                    out = fn(part)
            except _oom_error():
                if size == 1:
                    raise
                failed = True  # handled outside the except: the traceback pins the batch's memory
            if failed:
                self._halve(size)
                continue
            outs.append(out)
            i += size
        return outs

    def _halve(self, size: int) -> None:
        import warnings

        self.size, self.events = max(1, size // 2), self.events + 1
        if str(self.device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()
        warnings.warn(f"out of memory at batch {size} on {self.device}; retrying with batch {self.size} "
                      "(recorded as batch_size_final)", stacklevel=4)


def _entry(opts: EncodeOptions, kind: str, item_identity: dict, n: int) -> CacheEntry:
    cache = opts.cache
    key = {"kind": kind, **(cache.identity if cache else {}), **item_identity, "batch_size": opts.batch_size}
    root = cache.root if cache else None
    return open_entry(root, key, n, cache.chunk_items if cache else max(n, 1))


def _plan(ranges: list[tuple[int, int]], batch_size: int, longest_first: Callable[[int], int] | None = None):
    """Per missing chunk, its batches of item indices. With ``longest_first`` (item -> length),
    a chunk's items are batched longest first, so each batch holds items of similar length
    and a model that pads to the batch's longest item pads little (sentence-transformers
    sorts by length for the same reason); a stable sort, so equal lengths keep their order."""
    plan = []
    for start, end in ranges:
        idx = list(range(start, end))
        if longest_first is not None:
            idx.sort(key=longest_first, reverse=True)
        plan.append([idx[b:b + batch_size] for b in range(0, len(idx), batch_size)])
    return plan


def _finish(entry: CacheEntry, stage: Stage, backoff: Backoff, device: str, empty_dim: int, ranges):
    import torch

    stage.add_cached(shard_plan.cached_share(entry, ranges))  # one process: entry.info.cached_items
    stage.set_batching(backoff.requested, backoff.size, backoff.events)
    if entry.n_items == 0:
        return torch.empty(0, empty_dim, device=device)
    return entry.load()[EMBEDDING].to(device, non_blocking=True)


def _fill(entry: CacheEntry, ranges, plan, batches, fn, backoff: Backoff, stage: Stage) -> None:
    """Encode the given missing chunks and store each as soon as it is complete. ``plan`` is
    :func:`_plan` of ``ranges``; ``batches`` yields (batch, n) in the plan's order.
    Embeddings are put back in item order before they are stored."""
    with progress.bar(stage.name.replace("_", " "), entry.n_items, unit=_UNITS.get(stage.name, "it"),
                      initial=entry.info.cached_items) as bar:
        _fill_missing(entry, ranges, plan, batches, fn, backoff, stage, bar)


def _fill_missing(entry: CacheEntry, ranges, plan, batches, fn, backoff: Backoff, stage: Stage, bar) -> None:
    import torch

    from harness.core import faults
    from harness.parallel import distributed

    it = iter(batches)
    for (start, end), chunk in zip(ranges, plan):
        outs = []
        for _ in chunk:
            batch, n = next(it)
            outs.extend(backoff.run(fn, batch, n, stage))
            bar.update(n)  # after the batch's timed block; tqdm redraws at most every mininterval
        emb = torch.cat(outs)
        order = torch.as_tensor([i for b in chunk for i in b]) - start
        if not torch.equal(order, torch.arange(end - start)):
            emb = emb[torch.argsort(order)]
        entry.put(start, end, {EMBEDDING: emb})
        faults.maybe("encode", distributed.current().rank)


def _image_identity(model, images: ImageSet, digest_dir: str | None = None) -> dict:
    """The images by content (a file rewritten under its old name is a new entry), not by path;
    read from the same digest table as the run key (so no file is hashed twice)."""
    from harness.datasets.identity import images_digest

    return {"images": len(images), "image_content": images_digest(images, digest_dir),
            "preprocess": identity_of(model.image_transform())}


def encode_images(model, images: ImageSet, opts: EncodeOptions, stage: Stage):
    """(N, D) float32 embeddings on the model's device, in dataset order."""
    from torch.utils.data import DataLoader

    stored = opts.cache is not None and opts.cache.root is not None
    entry = _entry(opts, "images", _image_identity(model, images, opts.cache.digest_dir) if stored else {}, len(images))
    backoff = Backoff(opts.batch_size, opts.device)
    ranges = shard_plan.my_ranges(entry)  # all missing chunks in one process
    plan = _plan(ranges, opts.batch_size)
    if plan:
        cuda = str(opts.device).startswith("cuda")
        loader = DataLoader(
            _Pixels(images, model.image_transform()),
            batch_sampler=[b for chunk in plan for b in chunk],
            num_workers=opts.num_workers,
            pin_memory=cuda,  # page-locked batches let the adapter's .to(non_blocking=True) overlap
            prefetch_factor=2 if opts.num_workers else None,
        )
        _fill(entry, ranges, plan, ((px, len(px)) for px in loader), model.encode_images, backoff, stage)
    shard_plan.exchange(entry)
    return _finish(entry, stage, backoff, opts.device, model.embed_dim, ranges)


def _tokenizer_identity(model) -> str:
    """What the tokeniser makes of a probe sentence: changes with vocabulary, casing rules and
    context length, whatever the tokeniser object is."""
    probe = model.tokenize(["A Probe: two RED squares, left of 3 circles!", ""])
    parts = probe.items() if isinstance(probe, dict) else [("ids", probe)]
    blob = repr([(k, v.tolist() if hasattr(v, "tolist") else v) for k, v in parts])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def encode_texts(model, texts: Sequence[str], opts: EncodeOptions, stage: Stage):
    """(M, D) float32 embeddings in ``texts`` order; tokenisation counts as part of the text
    stage. Texts are batched longest first within each cache chunk (by characters, a cheap
    stand-in for tokens): open_clip's text towers here and tokenisers that pad to the longest
    in a batch then compute little padding; the order is undone before storing."""
    texts = list(texts)
    cut = text_limits.check_texts(model, texts)  # the tokenizer's silent cut, counted and recorded
    if cut is not None:
        stage.set_truncation(cut.max_tokens, cut.truncated)
    ident = {"texts": len(texts), "text_digest": texts_digest(texts), "batching": "longest_first"}
    if opts.cache is not None and opts.cache.root is not None:  # only a stored entry needs the probe
        ident["tokenizer"] = _tokenizer_identity(model)
    entry = _entry(opts, "texts", ident, len(texts))
    backoff = Backoff(opts.batch_size, opts.device)
    ranges = shard_plan.my_ranges(entry)
    plan = _plan(ranges, opts.batch_size, longest_first=lambda i: len(texts[i]))
    if plan:
        def encode(batch: list[str]):
            return model.encode_texts(model.tokenize(batch))

        batches = (([texts[i] for i in idx], len(idx)) for chunk in plan for idx in chunk)
        _fill(entry, ranges, plan, batches, encode, backoff, stage)
    shard_plan.exchange(entry)
    return _finish(entry, stage, backoff, opts.device, model.embed_dim, ranges)


def encode_cache(opts, meta, model, data, split: str) -> EncodeCache:
    """The identity that keys this run's cached embeddings: the weights (checkpoint sha256,
    else a digest of the loaded parameters), how the network computes (``model_facts``: the
    MLP activation of an open_clip model), precision, device type and dataset. Batch size
    and the items themselves are added by the encode loops."""
    from harness.results.cache import cache_root, module_digest

    if not opts.use_cache:
        return EncodeCache(root=None, chunk_items=_chunk_items(opts))
    ckpt = getattr(model, "checkpoint", None) or {}
    weights = ckpt.get("sha256")
    if not weights:
        inner = getattr(model, "model", None)
        if inner is None or not hasattr(inner, "state_dict"):
            # nothing identifies the weights: never risk a stale hit
            return EncodeCache(root=None, chunk_items=_chunk_items(opts))
        weights = "params:" + module_digest(inner)
    identity = {"model": meta.name, "source": meta.source, **_content_identity(ckpt), "weights": weights,
                "precision": opts.precision.value, "device_type": opts.device.split(":")[0],
                "dataset": data.name, "split": split, "dataset_fingerprint": data.fingerprint,
                **model_facts(model)}  # same weights built with GELU vs QuickGELU embed differently
    return EncodeCache(root=str(cache_root(opts.cache_dir)), identity=identity, chunk_items=_chunk_items(opts),
                       digest_dir=opts.cache_dir)


def _content_identity(ckpt: dict) -> dict:
    """A checkpoint (and its components: a fusion model's towers) by content: a file's sha256
    names the weights wherever they lie (a checkout, an installed wheel), so its path is left
    out; the id stays only where nothing was hashed (a hub name, random init).

    >>> _content_identity({"id": "/a/w.pt", "sha256": "ab", "components": {"image": {"id": "x", "sha256": None}}})
    {'checkpoint': None, 'components': {'image': {'checkpoint': 'x'}}}
    """
    parts = ckpt.get("components")
    out = {"checkpoint": None if ckpt.get("sha256") else ckpt.get("id")}
    if parts:
        out["components"] = {k: {**_content_identity(v), **({"sha256": v["sha256"]} if v.get("sha256") else {})}
                             for k, v in sorted(parts.items())}
    return out


def _chunk_items(opts) -> int:
    return opts.chunk_items or DEFAULT_CHUNK_ITEMS
