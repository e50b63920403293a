"""Scoring many (image, caption) pairs with a cross-encoder, reusing tower work.

Pairs are grouped by image, images are decoded once (in loader workers) in index order,
and for a :class:`~harness.core.interfaces.FactoredCrossEncoder` the vision tower runs once
per image and the text side once per caption; only the fusion part runs per pair. A plain
:class:`~harness.core.interfaces.CrossEncoder` (ViLT: one stream over both) gets each image's
pixels repeated for its pairs, which is all such a model allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.core.measure import Stage
from harness.core.progress import NULL as NULL_BAR
from harness.datasets.base import ImageSet
from harness.tasks.encode import EncodeOptions

DEFAULT_PAIR_BATCH = 256


def take(features: Any, index) -> Any:
    """Rows ``index`` of a feature tensor or of every tensor in a dict of them."""
    if isinstance(features, dict):
        return {k: take(v, index) for k, v in features.items()}
    return features[index.to(features.device)] if hasattr(features, "device") else features[index]


def concat(parts: list) -> Any:
    import torch

    if isinstance(parts[0], dict):
        return {k: concat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)


def is_factored(model: Any) -> bool:
    from harness.core.interfaces import FactoredCrossEncoder

    return isinstance(model, FactoredCrossEncoder)


class _ImageSubset:
    """Map-style dataset over chosen image ids, preprocessed in loader workers."""

    def __init__(self, images: ImageSet, ids: list[int], transform):
        self.images, self.ids, self.transform = images, ids, transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        return self.transform(self.images.load(self.ids[i]))


def text_features(model, captions: Sequence[str], caption_ids, opts: EncodeOptions) -> Any:
    """Text-side features of the given captions, in ``caption_ids`` order (once each)."""
    ids = caption_ids.tolist()
    parts = [model.text_features([captions[c] for c in ids[s:s + opts.batch_size]])
             for s in range(0, len(ids), opts.batch_size)]
    return concat(parts)


def score_pair_index(model, images: ImageSet, captions: Sequence[str], pairs, opts: EncodeOptions,
                     stage: Stage, pair_batch: int = DEFAULT_PAIR_BATCH, bar=NULL_BAR, owned=None):
    """Scores (P,) float32 (CPU) for ``pairs`` (P, 2) = rows of (image id, caption id).

    ``stage`` times the whole pass; its items are pairs, so items/s is pairs/s. ``bar``
    (:func:`harness.core.progress.bar`) counts the pairs scored. With ``owned`` (image-batch
    index -> bool; a rank of a sharded run) only those batches of images are scored, the
    other pairs' scores are 0, and every batch is the one a single process forms.
    """
    import torch
    from torch.utils.data import DataLoader

    pairs = torch.as_tensor(pairs, dtype=torch.long).reshape(-1, 2)
    scores = torch.empty(len(pairs), dtype=torch.float32)
    if len(pairs) == 0:
        return scores
    order = torch.argsort(pairs[:, 0], stable=True)  # group pairs by image
    image_ids = torch.unique(pairs[:, 0])
    factored = is_factored(model)
    if factored:
        cap_ids = torch.unique(pairs[:, 1])
        txt = text_features(model, captions, cap_ids, opts)
        cap_row = torch.full((len(captions),), -1, dtype=torch.long)
        cap_row[cap_ids] = torch.arange(len(cap_ids))
    n_ids, bs = len(image_ids), opts.batch_size
    starts = [s for i, s in enumerate(range(0, n_ids, bs)) if owned is None or owned(i)]
    loader = DataLoader(_ImageSubset(images, image_ids.tolist(), model.image_transform()),
                        batch_sampler=[list(range(s, min(s + bs, n_ids))) for s in starts],
                        num_workers=opts.num_workers, pin_memory=str(opts.device).startswith("cuda"))
    sorted_pairs = pairs[order]
    bounds = torch.searchsorted(sorted_pairs[:, 0].contiguous(), image_ids)  # first pair per image
    bounds = torch.cat([bounds, torch.tensor([len(pairs)])])
    if owned is not None:
        scores.zero_()
    for done, pixels in zip(starts, loader):
        first, last = done, done + len(pixels)
        lo, hi = int(bounds[first]), int(bounds[last])
        chunk = sorted_pairs[lo:hi]
        local = torch.searchsorted(image_ids[first:last].contiguous(), chunk[:, 0].contiguous())
        img = model.image_features(pixels) if factored else pixels
        for s in range(0, len(chunk), pair_batch):
            sel = slice(s, s + pair_batch)
            with stage.batch(len(chunk[sel])):
                if factored:
                    out = model.score_features(take(img, local[sel]), take(txt, cap_row[chunk[sel, 1]]))
                else:
                    out = model.score_pairs(img[local[sel]], [captions[c] for c in chunk[sel, 1].tolist()])
            scores[order[lo + s:lo + s + len(chunk[sel])]] = out.detach().float().cpu()
            bar.update(len(out))  # outside the timed block
    return scores
