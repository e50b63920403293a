"""The frozen image + text towers under a fusion head, and their features for a whole split.

Features are dicts of tensors with first dim = items:
  image: ``pooled`` (B, Di) and ``grid`` (B, G, Di) tokens of the last feature map;
  text:  ``pooled`` (B, Dt), ``tokens`` (B, T, Dt) and ``mask`` (B, T), T fixed by the spec
         so features of different batches stack.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from harness import progress
from harness.interfaces import LoadOptions

FEATURE_FORMAT = 1  # bump when what the towers return changes, so old caches are not reused


@dataclass(frozen=True)
class TowerSpec:
    """Which frozen towers, and how images/texts are prepared for them (part of a checkpoint)."""

    image_encoder: str = "efficientnet-lite0"
    text_encoder: str = "minilm-l6-v2"
    image_size: int = 224
    crop: bool = True          # TF eval crop; False resizes the whole image (content at borders)
    text_max_tokens: int = 32  # covers 99.9% of Flickr8k captions (longest 42 MiniLM tokens)

    def to_dict(self) -> dict:
        return asdict(self)


class FrozenTowers:
    """Runs the two frozen towers once per image / per text; no gradients, eval mode."""

    def __init__(self, spec: TowerSpec, image_tower, text_tower, device: str = "cpu"):
        self.spec, self.image_tower, self.text_tower, self.device = spec, image_tower, text_tower, device
        self.image_dim, self.text_dim = int(image_tower.dim), int(text_tower.dim)

    @property
    def checkpoint(self) -> dict:
        return {"image": self.image_tower.checkpoint, "text": self.text_tower.checkpoint}

    def image_transform(self):
        return self.image_tower.image_transform(self.spec.image_size, self.spec.crop)

    def image_features(self, pixels) -> dict:
        import torch

        with torch.no_grad():
            pooled, grid = self.image_tower.pooled_and_grid(pixels.to(self.device))
        return {"pooled": pooled.float(), "grid": grid.float()}

    def text_features(self, texts: Sequence[str]) -> dict:
        import torch

        with torch.no_grad():
            pooled, tokens, mask = self.text_tower.pooled_and_tokens(list(texts), self.spec.text_max_tokens)
        return {"pooled": pooled.float(), "tokens": tokens.float(), "mask": mask.bool()}


def load_towers(spec: TowerSpec, options: LoadOptions | None = None) -> FrozenTowers:
    from harness.models.encoders import ENCODERS

    options = options or LoadOptions()
    tower_options = LoadOptions(device=options.device, precision=options.precision)  # --weights is the head's
    img, txt = ENCODERS.get(spec.image_encoder), ENCODERS.get(spec.text_encoder)
    if img.modality != "image" or txt.modality != "text":
        raise ValueError(f"towers {spec.image_encoder!r}/{spec.text_encoder!r}: need an image and a text encoder")
    return FrozenTowers(spec, img.load(tower_options), txt.load(tower_options), options.device)


# ------------------------------------------------------------------ features of a split

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

    images = [data.images.key(i) for i in range(len(data.images))]
    return fingerprint(FEATURE_FORMAT, towers.spec.to_dict(), towers.checkpoint, images, list(data.captions),
                       list(data.caption_to_image))


def split_slices(feats: dict) -> tuple[dict[str, Any], dict[str, Any]]:
    """The cached dict -> (image features, text features) dicts as the heads take them."""
    img = {"pooled": feats["image.pooled"], "grid": feats["image.grid"]}
    txt = {"pooled": feats["text.pooled"], "tokens": feats["text.tokens"], "mask": feats["text.mask"]}
    return img, txt


# The two tower setups of the shipped fusion models. Synthetic scenes are 64x64 with objects
# up to the border: resized whole (no crop) to 128 px, EfficientNet's stride 32 gives a 4x4
# grid whose cells cover 16 source pixels (about one object), at a third of the cost of 224.
# Their captions are at most 15 MiniLM tokens.
SYNTHETIC_TOWERS = TowerSpec(image_size=128, crop=False, text_max_tokens=16)
FLICKR_TOWERS = TowerSpec(image_size=224, crop=True, text_max_tokens=32)
