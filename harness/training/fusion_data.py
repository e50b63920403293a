"""The retrieval splits ``vlbench fit`` trains and selects on, with a pair-preserving subset.

A random ``--limit`` subset of the synthetic train split would break most hard-negative
families (two scenes that differ only by a swap); the training subset here draws whole
families instead (seeded), so the swap partners that teach binding stay together.
"""

from __future__ import annotations

import random

from harness.datasets import DatasetRequest, RetrievalData, TaskKind, resolve_dataset
from harness.datasets.base import DatasetError, fingerprint, restrict_retrieval


def family_subset(families: list, n_images: int, seed: int) -> list[int]:
    """Sorted indices of whole families (seeded order) until ``n_images`` would be exceeded.

    >>> family_subset([0, 0, 1, 2, 2, 3], 4, seed=0)
    [0, 1, 3, 4]
    """
    groups: dict = {}
    for i, fam in enumerate(families):
        groups.setdefault(fam, []).append(i)
    order = sorted(groups, key=str)
    random.Random(seed).shuffle(order)
    keep: list[int] = []
    for fam in order:
        if len(keep) + len(groups[fam]) <= n_images:
            keep += groups[fam]
    return sorted(keep)


def load_split(dataset: str, split: str, data_root: str | None = None, max_images: int | None = None,
               seed: int = 0) -> RetrievalData:
    """A retrieval split; ``max_images`` keeps whole hard-negative families where the data has them."""
    meta = resolve_dataset(dataset)
    if TaskKind.RETRIEVAL not in meta.tasks:
        raise DatasetError(f"{meta.name}: fusion models train for matching on a retrieval view; it has "
                           f"{', '.join(t.value for t in meta.tasks)} (classifiers: --task image_text_classification)")
    data = meta.load(DatasetRequest(split=split, task=TaskKind.RETRIEVAL, data_root=data_root))
    if not isinstance(data, RetrievalData):
        raise DatasetError(f"{dataset}/{split}: fusion models train on a retrieval view")
    if max_images is None or max_images >= len(data.images):
        return data
    scenes = data.info.get("scenes")
    if scenes and all("family" in s for s in scenes):
        keep = family_subset([s["family"] for s in scenes], max_images, seed)
    else:
        keep = sorted(random.Random(seed).sample(range(len(data.images)), max_images))
    sub = restrict_retrieval(data, keep)
    sub.fingerprint = fingerprint(data.fingerprint, "family-subset", max_images, seed)
    sub.info["subset"] = {"images": len(keep), "max_images": max_images, "seed": seed,
                          "rule": "whole hard-negative families, seeded order" if scenes else "seeded sample"}
    if scenes:
        from harness.datasets.synthetic import hard_negatives

        sub.info["scenes"] = [scenes[i] for i in keep]
        sub.info["hard_negative_pairs"], sub.info["hard_negative_of"] = hard_negatives(sub.info["scenes"])
    return sub
