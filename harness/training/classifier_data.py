"""The train split ``vlbench fit --task image_text_classification`` fits a classifier on: the
image + text -> label view of any dataset (a registered name, ``jsonl:DIR``, the synthetic
views), its seeded held-out part, and the frozen towers' features of every distinct image and
text, computed once and cached by content (the same cache as the matching fit's features)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.errors import OptionError
from harness.datasets import DatasetRequest, TaskKind, resolve_dataset
from harness.datasets.base import DatasetError, fingerprint
from harness.datasets.pair_labels import ImageTextLabelData, check_holdout, grouped_holdout
from harness.models.fusion.towers import FrozenTowers
from harness.training.fusion_features import FEATURE_FORMAT, _batched, _Images

TASK = "image_text_classification"


def load_train(dataset: str, split: str, data_root: str | None = None, limit: int | None = None,
               seed: int = 0) -> tuple[str, ImageTextLabelData]:
    """(the dataset's canonical name, its ``split`` as image + text -> label items); ``limit``:
    a seeded subset (whole consistency groups where the data has them), recorded in its info."""
    meta = resolve_dataset(dataset)  # a registered name, or jsonl:DIR, as `vlbench run` resolves it
    if TaskKind.IMAGE_TEXT_CLASSIFICATION not in meta.tasks:
        raise DatasetError(f"{meta.name}: has no image + text -> label view to fit a classifier on "
                           f"(its views: {', '.join(t.value for t in meta.tasks)})")
    if split not in meta.splits:
        raise OptionError(f"--split {split!r}: {meta.name} has splits {', '.join(meta.splits)}")
    data = meta.load(DatasetRequest(split=split, task=TaskKind.IMAGE_TEXT_CLASSIFICATION, data_root=data_root,
                                    limit=limit, seed=seed))
    if data.is_pair:
        raise DatasetError(f"{meta.name}/{split}: items with two images (NLVR2) are not fitted by "
                           "`vlbench fit`; the fusion heads read one image per item")
    return meta.name, data


@dataclass
class Holdout:
    """Item indices of the fitted part and the held-out part of the train split."""

    fit: list[int]
    held: list[int]
    frac: float
    seed: int
    unit: str

    def describe(self) -> dict:
        return {"frac": self.frac, "seed": self.seed, "fit_items": len(self.fit), "held_items": len(self.held),
                "unit": self.unit}


def holdout(data: ImageTextLabelData, frac: float, seed: int) -> Holdout:
    """Seeded, stratified, whole ``holdout_groups`` (items sharing an image or a scene) on one
    side; a class too small to hold one item out is one error naming it."""
    check_holdout(data, ignore_empty=True)
    split = grouped_holdout(data, frac, seed)
    if split is None:
        raise DatasetError(f"{data.name}/{data.split}: cannot hold out {frac:.0%} of train with every class on "
                           "both sides (too few items or groups per class); add items or lower the held-out share")
    unit = "holdout groups (items sharing images stay together)" if data.holdout_groups else "items"
    return Holdout(split[0], split[1], frac, seed, unit)


def content_key(towers: FrozenTowers, data: ImageTextLabelData) -> str:
    """What the features depend on: the towers and the distinct images (by content) and texts."""
    from harness.datasets.identity import images_digest

    images, _ = data.distinct_images()
    texts, _ = data.distinct_texts()
    keys = [images.key(i) for i in range(len(images))]
    return fingerprint(FEATURE_FORMAT, "label-items", towers.spec.to_dict(), towers.checkpoint, towers.facts, keys,
                       images_digest(images), texts)


def compute_item_features(towers: FrozenTowers, data: ImageTextLabelData, batch_size: int = 64, log=None) -> dict:
    """Every distinct image and text through the towers once; ``item_image`` / ``item_text``
    map items to them. Big tensors in fp16, as the matching fit stores them."""
    import torch

    images, of_image = data.distinct_images()
    texts, of_text = data.distinct_texts()
    img = _batched(towers.image_features, _Images(images, towers.image_transform()), batch_size, "images", log)
    txt = _batched(towers.text_features, texts, 4 * batch_size, "texts", log)
    return {"image.pooled": img["pooled"], "image.grid": img["grid"].half(),
            "text.pooled": txt["pooled"], "text.tokens": txt["tokens"].half(), "text.mask": txt["mask"],
            "item_image": torch.as_tensor(of_image, dtype=torch.long),
            "item_text": torch.as_tensor(of_text, dtype=torch.long)}


def item_features(towers: FrozenTowers, data: ImageTextLabelData, batch_size: int = 64, log=None,
                  root=None) -> dict:
    """Cached :func:`compute_item_features` (``$VLBENCH_CACHE/fusion-features``)."""
    from harness.models.fusion.cache import cached_tensors

    key = f"labels-{content_key(towers, data)}"
    return cached_tensors(key, lambda: compute_item_features(towers, data, batch_size, log), root)


def targets(data: ImageTextLabelData):
    """(N,) class indices, or (N, K) 0/1 float indicators for multi-label data."""
    import torch

    if not data.multilabel:
        return torch.as_tensor(data.labels, dtype=torch.long)
    y = torch.zeros(len(data), len(data.classnames))
    for i, ys in enumerate(data.labels):
        y[i, list(ys)] = 1.0
    return y
