"""The image + text -> label view (``image_text_classification``): one image (two for
NLVR2's left/right pairs), one text and a label per item; binary, multi-class or multi-label.

``labels[i]`` is a class index, or for a multi-label dataset the list of class indices of
item i (never empty; the loaders sort them). ``groups[i]``, when given, names the unit the
dataset's ``consistency`` is counted over (NLVR: a sentence and its six images; NLVR2: a sentence
across its image pairs). ``origins[i]``, when given, is where item i was read
(``test.jsonl:12``), so a message about an item can name its file and line.
``holdout_groups[i]``, when given, names the unit that must stay on one side of any cut of
the split into a fitted and a held-out part (:func:`grouped_holdout`): items that share
images or were written together (NLVR: an example's six box orders and its co-presented
examples; NLVR2: an eight-image set; synthetic: the items of one image pair or scene), as
the datasets' authors advise for choosing a validation set.

The helpers at the bottom serve the task that fits a probe on a train split and scores
another one: :func:`check_labels` (classes of the evaluation split that train never saw:
warned and counted, the run goes on) and :func:`check_holdout` (a class too small to hold
any train item out for choosing hyper-parameters: one error naming it).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path  # noqa: F401 - the doctests build paths
from typing import Any

from .base import DatasetError, fingerprint, subset_indices
from .images import ImageSet

# How each model kind reads a two-image item (NLVR2), recorded in ``info["pair_mode"]``.
PAIR_MODE_NOTE = ("two images per item (left, right): dual encoders embed each image and the fusion head "
                  "reads both image embeddings, concatenated; cross-encoders read each (image, text) pair and "
                  "their two joint representations are concatenated")


def _where(name: str, split: str) -> str:
    return f"{name}/{split}"


@dataclass
class ImageTextLabelData:
    """Items of (image, text, label); see the module docstring for the fields' meaning."""

    name: str
    split: str
    images: ImageSet                       # one image per item (the left one for a pair)
    texts: list[str]
    labels: list[int] | list[list[int]]    # class index per item; multi-label: sorted class indices
    classnames: list[str]
    multilabel: bool
    fingerprint: str
    images_right: ImageSet | None = None   # NLVR2: item i is (images[i], images_right[i], texts[i])
    groups: list[str] | None = None        # consistency units (NLVR: the sentence identifier)
    origins: list[str] | None = None       # "file:line" per item, for messages
    holdout_groups: list[str] | None = None  # items sharing a value never straddle a fit/held-out cut
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where, n = _where(self.name, self.split), len(self.texts)
        if n == 0:
            raise DatasetError(f"{where}: the split holds no items")
        for what, column in (("images", self.images), ("labels", self.labels), ("images_right", self.images_right),
                             ("groups", self.groups), ("origins", self.origins),
                             ("holdout_groups", self.holdout_groups)):
            if column is not None and len(column) != n:
                raise DatasetError(f"{where}: {n} texts but {len(column)} {what}")
        if not self.classnames or len(set(self.classnames)) != len(self.classnames):
            raise DatasetError(f"{where}: class names must be a non-empty list without repeats")
        bad_text = next((i for i, t in enumerate(self.texts) if not isinstance(t, str)), None)
        if bad_text is not None:
            raise DatasetError(f"{where}: item {self._item(bad_text)} has a text that is not a string")
        k = len(self.classnames)
        for i, y in enumerate(self.labels):
            problem = _label_problem(y, k, self.multilabel)
            if problem:
                raise DatasetError(f"{where}: item {self._item(i)}: {problem}")
        if self.images_right is not None and "pair_mode" not in self.info:
            self.info["pair_mode"] = PAIR_MODE_NOTE

    def _item(self, i: int) -> str:
        return f"{i} ({self.origins[i]})" if self.origins else str(i)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def all_images(self) -> ImageSet:
        """Every image an item reads: the left ones, then a pair dataset's right ones (what a
        run key's image digest must cover)."""
        if self.images_right is None:
            return self.images
        return ImageSet(list(self.images.paths) + list(self.images_right.paths))

    @property
    def is_pair(self) -> bool:
        """True when each item has a left and a right image (NLVR2)."""
        return self.images_right is not None

    @property
    def kind(self) -> str:
        """"binary", "multiclass" or "multilabel"."""
        return "multilabel" if self.multilabel else ("binary" if len(self.classnames) == 2 else "multiclass")

    def label_sets(self) -> list[tuple[int, ...]]:
        """Every item's classes as a tuple (one class for a single-label dataset)."""
        return [tuple(y) for y in self.labels] if self.multilabel else [(y,) for y in self.labels]

    def class_counts(self) -> list[int]:
        """Items per class (for multi-label: items carrying that class)."""
        out = [0] * len(self.classnames)
        for ys in self.label_sets():
            for y in ys:
                out[y] += 1
        return out

    def distinct_images(self, right: bool = False) -> tuple[ImageSet, list[int]]:
        """(each image file once, in first-use order; item -> its index there): items share
        images (NLVR2 pairs, the synthetic views), and an image is encoded once.

        >>> d = ImageTextLabelData("d", "test", ImageSet([Path("a"), Path("b"), Path("a")]), ["x", "y", "z"],
        ...                        [0, 1, 0], ["no", "yes"], False, "fp")
        >>> d.distinct_images()
        (ImageSet(paths=[PosixPath('a'), PosixPath('b')]), [0, 1, 0])
        """
        images = self.images_right if right else self.images
        if images is None:
            raise DatasetError(f"{_where(self.name, self.split)}: items have no right image")
        first: dict[str, tuple[int, int]] = {}  # path -> (its distinct index, its first item)
        of_item = []
        for i, path in enumerate(images.paths):  # .paths once: HF images build it per call
            of_item.append(first.setdefault(str(path), (len(first), i))[0])
        return images.subset([i for _, i in first.values()]), of_item

    def distinct_texts(self) -> tuple[list[str], list[int]]:
        """(each text once, in first-use order; item -> its index there)."""
        index: dict[str, int] = {}
        of_item = [index.setdefault(t, len(index)) for t in self.texts]
        return list(index), of_item

    def counts(self) -> dict[str, int]:
        out = {"items": len(self.texts), "images": len(self.images), "classes": len(self.classnames),
               "labels_used": sum(c > 0 for c in self.class_counts())}
        if self.images_right is not None:
            out["images_right"] = len(self.images_right)
        if self.groups is not None:
            out["groups"] = len(set(self.groups))
        if self.holdout_groups is not None:
            out["holdout_groups"] = len(set(self.holdout_groups))
        return out

    def restrict(self, keep: Sequence[int]) -> ImageTextLabelData:
        """Only the listed items (in that order); classes stay as they are."""
        keep = list(keep)
        pick = (lambda col: None if col is None else [col[i] for i in keep])
        return ImageTextLabelData(
            name=self.name, split=self.split, images=self.images.subset(keep), texts=pick(self.texts),
            labels=pick(self.labels), classnames=list(self.classnames), multilabel=self.multilabel,
            fingerprint=fingerprint(self.fingerprint, keep),
            images_right=None if self.images_right is None else self.images_right.subset(keep),
            groups=pick(self.groups), origins=pick(self.origins), holdout_groups=pick(self.holdout_groups),
            info=dict(self.info))


def _label_problem(y: Any, k: int, multilabel: bool) -> str | None:
    def bad_index(v: Any) -> bool:
        return isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < k

    if not multilabel:
        return f"label {y!r} is not a class index in 0..{k - 1}" if bad_index(y) else None
    if not isinstance(y, list):
        return f"a multi-label item needs a list of class indices, got {y!r}"
    if not y:
        return "a multi-label item has no labels"
    if any(bad_index(v) for v in y):
        return f"labels {y!r} hold something that is not a class index in 0..{k - 1}"
    if len(set(y)) != len(y):
        return f"labels {y!r} repeat a class"
    return None


def group_subset(groups: Sequence[str], limit: int, seed: int) -> list[int]:
    """Items of whole groups, groups drawn in a seeded order while the total stays within
    ``limit`` (at least one group), sorted: a subset never splits a consistency unit.

    >>> group_subset(["a", "a", "b", "c", "c"], 3, seed=0)
    [0, 1, 2]
    """
    order = list(dict.fromkeys(groups))
    members: dict[str, list[int]] = {g: [] for g in order}
    for i, g in enumerate(groups):
        members[g].append(i)
    chosen: list[int] = []
    for gi in _seeded_order(len(order), seed):
        size = len(members[order[gi]])
        if chosen and len(chosen) + size > limit:
            continue
        chosen += members[order[gi]]
        if len(chosen) >= limit:
            break
    return sorted(chosen)


def _seeded_order(n: int, seed: int) -> list[int]:
    import random

    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def limit_pairs(data: ImageTextLabelData, limit: int | None, seed: int,
                name: str | None = None) -> ImageTextLabelData:
    """A seeded subset of ``limit`` items (whole groups when the data has groups), recorded in
    ``info["subset"]`` as :func:`harness.datasets.base.apply_limit` does; ``name`` names a
    manifest subset."""
    if limit is None:
        return data
    if limit <= 0:
        raise DatasetError(f"--limit must be positive, got {limit}")
    n = len(data)
    if limit < n:
        keep = group_subset(data.groups, limit, seed) if data.groups is not None else subset_indices(n, limit, seed)
        data = data.restrict(keep)
    record = {"limit": limit, "seed": seed, "unit": "groups" if data.groups is not None else "items",
              **({"name": name} if name else {})}
    previous = data.info.get("subset")
    data.info["subset"] = record if previous is None else {**record, "within": previous}
    return data


# ---------------------------------------------------------------- checks the task calls


def _examples(data: ImageTextLabelData, items: list[int], n: int = 3) -> str:
    names = [data.origins[i] if data.origins else f"item {i}" for i in items[:n]]
    return ", ".join(names) + (", ..." if len(items) > n else "")


def check_labels(train: ImageTextLabelData, eval: ImageTextLabelData) -> dict[str, Any]:
    """Classes present in the evaluation split that no train item carries. No probe fitted
    on train can predict them, so their items count against every model; the run goes on,
    with one warning naming the classes and where their items are, and the counts returned
    (the task puts them in its record). Different class lists are an error.

    Returns ``{"unseen_classes": [names], "unseen_items": n}``."""
    if list(train.classnames) != list(eval.classnames):
        raise DatasetError(f"{eval.name}: the {train.split} and {eval.split} splits have different classes "
                           f"({len(train.classnames)} vs {len(eval.classnames)})")
    seen = {c for c, count in enumerate(train.class_counts()) if count}
    unseen = sorted({y for ys in eval.label_sets() for y in ys} - seen)
    items = [i for i, ys in enumerate(eval.label_sets()) if set(ys) & set(unseen)]
    if unseen:
        names = ", ".join(repr(eval.classnames[c]) for c in unseen[:5]) + (", ..." if len(unseen) > 5 else "")
        warnings.warn(f"{_where(eval.name, eval.split)}: {len(items)} item(s) carry label(s) the {train.split} "
                      f"split never has ({names}), e.g. {_examples(eval, items)}; no probe can predict them, "
                      "they count as errors", stacklevel=2)
    return {"unseen_classes": [eval.classnames[c] for c in unseen], "unseen_items": len(items)}


def grouped_holdout(data: ImageTextLabelData, frac: float, seed: int) -> tuple[list[int], list[int]] | None:
    """(fit, held-out) item indices, whole ``holdout_groups`` (each item alone when None) on
    one side, stratified: groups are taken in a seeded order while no class would exceed
    ``round(frac * n_c)`` held items (at least 1, at most ``n_c - 1``). None when some class
    of train would end up with no held-out or no fitted item (too few items or groups).

    >>> d = ImageTextLabelData("d", "train", ImageSet([Path("i")] * 6), list("abcdef"), [0, 0, 0, 1, 1, 1],
    ...                        ["no", "yes"], False, "fp", holdout_groups=["g1", "g1", "g2", "g3", "g3", "g4"])
    >>> grouped_holdout(d, 0.34, seed=0)
    ([0, 1, 3, 4], [2, 5])
    """
    import random

    keys = data.holdout_groups or [str(i) for i in range(len(data))]
    members: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        members.setdefault(k, []).append(i)
    sets = data.label_sets()
    total = data.class_counts()
    want = [min(n - 1, max(1, round(frac * n))) if n else 0 for n in total]
    order = list(members)
    random.Random(seed).shuffle(order)
    held_count, held = [0] * len(total), []
    for key in order:
        add = [0] * len(total)
        for i in members[key]:
            for y in sets[i]:
                add[y] += 1
        if all(held_count[c] + add[c] <= want[c] for c in range(len(total)) if add[c]):
            held += members[key]
            held_count = [h + a for h, a in zip(held_count, add)]
    if any(n and not 0 < h < n for h, n in zip(held_count, total)):
        return None
    held_set = set(held)
    return [i for i in range(len(data)) if i not in held_set], sorted(held)


def check_holdout(train: ImageTextLabelData, min_per_class: int = 2, ignore_empty: bool = True) -> None:
    """Fail, naming the class and its items, when a class has fewer than ``min_per_class``
    train items -- or, when the data has ``holdout_groups``, items in fewer than that many
    groups: the held-out part of train (where hyper-parameters are chosen) could not hold one
    of it while the fitted part keeps one. Classes with no train item at all are the business
    of :func:`check_labels` (skipped when ``ignore_empty``)."""
    sets = train.label_sets()
    for c, count in enumerate(train.class_counts()):
        if count == 0 and ignore_empty:
            continue
        items = [i for i, ys in enumerate(sets) if c in ys]
        units = {train.holdout_groups[i] for i in items} if train.holdout_groups else set(items)
        if len(units) >= min_per_class:
            continue
        grouped = f" in {len(units)} group(s) that stay whole" if train.holdout_groups else ""
        raise DatasetError(f"{_where(train.name, train.split)}: class {train.classnames[c]!r} has {count} item(s)"
                           + grouped + (f" ({_examples(train, items)})" if items else "")
                           + "; holding part of train out to choose the probe's settings needs at least "
                           f"{min_per_class} per class", "add items of that class, or remove them")
