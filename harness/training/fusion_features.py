"""Tower features of a whole split for ``vlbench fit``: every image and caption through the
frozen towers once, cached by the split's contents and the towers' identity, so the three
fusion designs (and every later fit) train from one tower pass."""

from __future__ import annotations

import time
from typing import Any

from harness.core import progress
from harness.models.fusion.towers import FrozenTowers

FEATURE_FORMAT = 1  # bump when what the towers return changes, so old caches are not reused


def _batched(fn, items, batch_size: int, what: str, log) -> dict:
    import torch

    parts: list[dict] = []
    started = time.perf_counter()
    with progress.bar(f"features: {what}", len(items), unit=what.rstrip("s")) as bar:
        for start in range(0, len(items), batch_size):
            parts.append({k: v.cpu() for k, v in fn(items[start:start + batch_size]).items()})
            done = min(start + batch_size, len(items))
            bar.update(done - start)
            # the periodic lines are the progress report where no bar is drawn; the last one stays
            if log and (done == len(items) or (len(parts) % 20 == 0 and not progress.showing())):
                log(f"{what}: {done}/{len(items)} ({done / (time.perf_counter() - started):.1f}/s)")
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


class _Images:
    """Sliceable view: images[a:b] -> stacked preprocessed pixels."""

    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, s: slice):
        import torch

        return torch.stack([self.transform(self.images.load(i)) for i in range(*s.indices(len(self)))])


def compute_split_features(towers: FrozenTowers, data, batch_size: int = 64, log=None) -> dict:
    """Every image and caption of a retrieval split through the towers; big tensors in fp16."""
    import torch

    img = _batched(towers.image_features, _Images(data.images, towers.image_transform()), batch_size, "images", log)
    txt = _batched(towers.text_features, list(data.captions), 4 * batch_size, "captions", log)
    return {"image.pooled": img["pooled"], "image.grid": img["grid"].half(),
            "text.pooled": txt["pooled"], "text.tokens": txt["tokens"].half(), "text.mask": txt["mask"],
            "caption_to_image": torch.as_tensor(data.caption_to_image, dtype=torch.long)}


def split_features(towers: FrozenTowers, data, batch_size: int = 64, log=None, root=None) -> dict:
    """Cached :func:`compute_split_features`, keyed by the split's contents and tower identity."""
    from harness.models.fusion.cache import cached_tensors

    key = f"{data.name}-{data.split}-{content_key(towers, data)}"
    return cached_tensors(key, lambda: compute_split_features(towers, data, batch_size, log), root)


def content_key(towers: FrozenTowers, data) -> str:
    """What the features depend on: towers and the split's contents (image files, captions,
    ground truth) -- not the loader's fingerprint scheme, which may change without them."""
    from harness.datasets.base import fingerprint
    from harness.datasets.identity import images_digest

    images = [data.images.key(i) for i in range(len(data.images))]
    return fingerprint(FEATURE_FORMAT, towers.spec.to_dict(), towers.checkpoint, towers.facts, images, images_digest(data.images),
                       list(data.captions), list(data.caption_to_image))


def split_slices(feats: dict) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cached dict -> (image features, text features) dicts as the heads take them."""
    img = {"pooled": feats["image.pooled"], "grid": feats["image.grid"]}
    txt = {"pooled": feats["text.pooled"], "tokens": feats["text.tokens"], "mask": feats["text.mask"]}
    return img, txt
