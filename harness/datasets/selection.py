"""Caption-selection data: images and items (a true caption with foils, or a 2x2 group).

Every caption-selection loader ends in :func:`assemble_selection`: the images listed by the
items are checked with the shared bad-file policy (a test set must be complete), each distinct
image is listed once, and the fingerprint hashes every item. ``--limit N`` keeps a seeded
subset of N items (their images only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.metrics.selection import SelectionSpec

from .assemble import content_hash, refuse_nul_captions, usable_files
from .base import DatasetError, DatasetRequest, fingerprint, subset_indices
from .images import ImageSet


@dataclass(frozen=True)
class CaptionItem:
    """``images`` indexes the data's images: one (a selection item: ``captions[0]`` is true,
    the rest are foils) or two (a Winoground group: caption k belongs to image k)."""

    images: tuple[int, ...]
    captions: tuple[str, ...]
    subset: str
    category: str | None = None  # ARO relation / attribute pair, Winoground tag: for macro means

    @property
    def is_group(self) -> bool:
        return len(self.images) == 2


@dataclass
class CaptionSelectionData:
    name: str
    split: str
    images: Any                      # ImageSet-like: len, load(i), key(i), paths, subset(keep)
    items: list[CaptionItem]
    spec: SelectionSpec
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        for k, item in enumerate(self.items):
            where = f"{self.name}/{self.split}: item {k} ({item.subset})"
            if not all(0 <= i < n for i in item.images):
                raise DatasetError(f"{where} points at a missing image")
            if item.is_group and len(item.captions) != 2:
                raise DatasetError(f"{where}: a 2-image group needs exactly 2 captions")
            if not item.is_group and (len(item.images) != 1 or len(item.captions) < 2):
                raise DatasetError(f"{where}: needs one image, a true caption and at least one foil")
            if not item.is_group and item.subset not in self.spec.subsets:
                raise DatasetError(f"{where}: subset not among {list(self.spec.subsets)}")

    def counts(self) -> dict[str, int]:
        return {"items": len(self.items), "groups": sum(it.is_group for it in self.items)}

    def limited(self, limit: int | None, seed: int, name: str | None = None) -> CaptionSelectionData:
        """``--limit`` counts items here, not images (``harness.datasets.base.apply_limit``)."""
        return limit_items(self, limit, seed, name)

    def restrict(self, keep: Sequence[int]) -> CaptionSelectionData:
        """The listed items only, with just the images they use (re-indexed)."""
        items = [self.items[k] for k in keep]
        used = sorted({i for item in items for i in item.images})
        remap = {old: new for new, old in enumerate(used)}
        items = [CaptionItem(tuple(remap[i] for i in it.images), it.captions, it.subset, it.category)
                 for it in items]
        return CaptionSelectionData(self.name, self.split, self.images.subset(used), items, self.spec,
                                    fingerprint(self.fingerprint, list(keep)), dict(self.info))


def swap_groups(caption_to_image: Sequence[int], n_images: int, pairs):
    """Per swap pair ``[i, j, kind]`` (images sharing a layout, their k-th captions differing only
    by ``kind``) and caption position k: ``(kind, i, j, caption a of i, caption b of j)``. Both the
    hard-negative accuracies (``hn_*``) and the synthetic caption-selection items are these groups.

    >>> list(swap_groups([0, 0, 1, 1], 2, [[0, 1, "colour_swap"]]))
    [('colour_swap', 0, 1, 0, 2), ('colour_swap', 0, 1, 1, 3)]
    """
    caps: list[list[int]] = [[] for _ in range(n_images)]
    for c, i in enumerate(caption_to_image):
        caps[i].append(c)
    for i, j, kind in pairs:
        for a, b in zip(caps[i], caps[j]):
            yield kind, i, j, a, b


def assemble_selection(name: str, split: str, items: list[tuple[tuple, tuple[str, ...], str, str | None]],
                       spec: SelectionSpec, where: str, hint: str, fingerprint_parts: tuple, info: dict[str, Any],
                       request: DatasetRequest, image_set=None) -> CaptionSelectionData:
    """``(image refs, captions, subset, category)`` per item -> CaptionSelectionData, where an
    image ref is ``(label, path or None if not found)`` and equal labels are one image.

    Missing or unreadable images fail the split (an evaluation set must be complete).
    ``image_set(labels, paths)`` lets a loader wrap the files (ARO crops each to its box)."""
    if not items:
        raise DatasetError(f"{name}/{split}: no items listed {where}")
    refuse_nul_captions(name, split, ((refs[0][0], list(caps)) for refs, caps, *_ in items), info)
    paths: dict[str, Path | None] = {}
    for refs, *_ in items:
        for label, path in refs:
            paths.setdefault(label, path)
    labels = list(paths)
    usable_files(name, split, [(label, paths[label]) for label in labels], where, hint,
                 partial_ok=False, strict=request.strict)
    index = {label: i for i, label in enumerate(labels)}
    out = [CaptionItem(tuple(index[label] for label, _ in refs), tuple(caps), subset, category)
           for refs, caps, subset, category in items]
    digest = content_hash(labels, ((it.subset, "\t".join(it.captions) + f"\t{it.images}\t{it.category}")
                                   for it in out))
    files = [paths[label] for label in labels]
    images = image_set(labels, files) if image_set is not None else ImageSet(files)
    data = CaptionSelectionData(name, split, images, out, spec, fingerprint(name, split, *fingerprint_parts, digest),
                                {**info, "items": len(out)})
    return limit_items(data, request.limit, request.seed)


def limit_items(data: CaptionSelectionData, limit: int | None, seed: int,
                name: str | None = None) -> CaptionSelectionData:
    """A seeded subset of ``limit`` items, recorded in ``info["subset"]`` (``name``: a manifest subset)."""
    if limit is None:
        return data
    keep = subset_indices(len(data.items), limit, seed)
    if len(keep) < len(data.items):
        data = data.restrict(keep)
    record = {"limit": limit, "seed": seed, "unit": "items", **({"name": name} if name else {})}
    previous = data.info.get("subset")
    data.info["subset"] = record if previous is None else {**record, "within": previous}
    return data
