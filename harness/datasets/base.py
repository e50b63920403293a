"""Dataset records shared by every loader. No torch here: images load lazily with PIL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .errors import DatasetError, DatasetNotFound  # noqa: F401 - re-exported: loaders import them from here
from .images import ImageSet  # noqa: F401 - re-exported


class TaskKind(str, Enum):
    RETRIEVAL = "retrieval"
    ZEROSHOT = "zeroshot"
    CAPTION_SELECTION = "caption_selection"  # harness.datasets.selection.CaptionSelectionData
    HUMAN_AGREEMENT = "human_agreement"  # (image, caption) pairs with human quality judgments
    LINEAR_PROBE = "linear_probe"        # the classification view of a train split and an eval split
    IMAGE_TEXT_CLASSIFICATION = "image_text_classification"  # harness.datasets.pair_labels.ImageTextLabelData
    # the train split and the evaluation split of image_text_classification, for the task that
    # fits a probe on one and scores the other (harness.datasets.views.ImageTextProbeData)
    IMAGE_TEXT_PROBE = "image_text_probe"
    CAPTIONING = "captioning"            # the retrieval view read as images with reference captions


# Views a dataset gets from another one its loader has: a linear probe reads the classification
# view twice (train + the evaluation split), so any format with a zeroshot view offers it; the
# image + text probe reads the image_text_classification view twice; captioning reads the
# retrieval view (an image's captions are its references).
DERIVED_VIEWS = {TaskKind.LINEAR_PROBE: TaskKind.ZEROSHOT,
                 TaskKind.IMAGE_TEXT_PROBE: TaskKind.IMAGE_TEXT_CLASSIFICATION,
                 TaskKind.CAPTIONING: TaskKind.RETRIEVAL}
# Derived views every dataset offering the base view offers too, with no manifest line: every
# image + text -> label dataset is there to fit a classifier on its train split.
IMPLIED_VIEWS = {TaskKind.IMAGE_TEXT_CLASSIFICATION: (TaskKind.IMAGE_TEXT_PROBE,)}


def with_implied(tasks: tuple[TaskKind, ...]) -> tuple[TaskKind, ...]:
    """``tasks`` plus the views they imply, in order, without repeats.

    >>> [t.value for t in with_implied((TaskKind.IMAGE_TEXT_CLASSIFICATION,))]
    ['image_text_classification', 'image_text_probe']
    """
    out = list(tasks)
    for t in tasks:
        out += [v for v in IMPLIED_VIEWS.get(t, ()) if v not in out]
    return tuple(out)


def loader_view(task: TaskKind) -> TaskKind:
    """The view a format's loader is asked for to serve ``task``.

    >>> loader_view(TaskKind.LINEAR_PROBE).value, loader_view(TaskKind.CAPTIONING).value
    ('zeroshot', 'retrieval')
    """
    return DERIVED_VIEWS.get(task, task)


@dataclass
class RetrievalData:
    """Images, captions and ground truth: ``caption_to_image[j]`` is the image of caption j.

    ``image_groups`` are groupings the dataset declares over its images, ``{grouping: one label
    per image}`` (NoCaps: ``{"domain": ["in-domain", "out-domain", ...]}``); a task that reports
    per group (captioning) reports each label's images on their own."""

    name: str
    split: str
    images: ImageSet
    captions: list[str]
    caption_to_image: list[int]
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)  # subset seed, dropped counts, ...
    image_groups: dict[str, list[str]] = field(default_factory=dict)
    image_ids: list[str] = field(default_factory=list)  # the source's own image ids (NoCaps' "id"), if any

    def __post_init__(self) -> None:
        if self.image_ids and len(self.image_ids) != len(self.images):
            raise DatasetError(f"{self.name}/{self.split}: {len(self.image_ids)} image ids for {len(self.images)} images")
        if len(self.captions) != len(self.caption_to_image):
            raise DatasetError(f"{self.name}/{self.split}: captions and ground truth differ in length")
        n = len(self.images)
        bad = [i for i in self.caption_to_image if not 0 <= i < n]
        if bad:
            raise DatasetError(f"{self.name}/{self.split}: caption points at missing image index {bad[0]}")
        for grouping, labels in self.image_groups.items():
            if len(labels) != n or not all(isinstance(g, str) and g for g in labels):
                raise DatasetError(f"{self.name}/{self.split}: image group {grouping!r} needs one non-empty "
                                   f"label per image ({len(labels)} labels for {n} images)")

    def counts(self) -> dict[str, int]:
        """What a record states of this view besides its images."""
        return {"captions": len(self.captions)}


@dataclass
class ClassificationData:
    """Images with integer labels, class names and prompt templates (``"a photo of a {}."``)."""

    name: str
    split: str
    images: ImageSet
    labels: list[int]
    classnames: list[str]
    templates: list[str]
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.images):
            raise DatasetError(f"{self.name}/{self.split}: {len(self.images)} images but {len(self.labels)} labels")
        k = len(self.classnames)
        if any(not 0 <= y < k for y in self.labels):
            raise DatasetError(f"{self.name}/{self.split}: a label is outside 0..{k - 1}")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise DatasetError(f"{self.name}: every prompt template needs a '{{}}' for the class name")

    def counts(self) -> dict[str, int]:
        return {"classes": len(self.classnames), "templates": len(self.templates)}


@dataclass(frozen=True)
class DatasetRequest:
    """What a runner asks a dataset loader for."""

    split: str
    task: TaskKind
    data_root: str | None = None  # root of local datasets (one folder per dataset)
    cache_dir: str | None = None  # where generated/derived data may be written
    limit: int | None = None      # deterministic subset of this many images
    seed: int = 0
    strict: bool = False          # every skipped item (line, caption, image) fails the load instead
    images: bool = True           # False: the caller reads no image (a text-only scorer), so none is looked for


@dataclass(frozen=True)
class Format:
    """A registered loader module: how to read one on-disk/hub format. ``load(spec, request)``
    reads a manifest entry's split; ``probe(spec, data_root)`` says cheaply (no image decoding)
    why it cannot be loaded here, or None. ``options`` are the manifest keys it accepts."""

    name: str
    tasks: tuple[TaskKind, ...]
    load: Callable[[Any, DatasetRequest], RetrievalData | ClassificationData]
    probe: Callable[[Any, str | None], str | None]
    options: dict[str, type] = field(default_factory=dict)
    needs_classes: bool = False  # zeroshot views need the manifest's class names and templates


def data_roots(folder: str, data_root: str | None) -> list[Path]:
    """Where a local dataset may sit: ``<root>/<folder>`` then ``<root>`` itself, for the
    ``--data-root`` given, else ``VLBENCH_DATA``; empty when neither is set."""
    import os

    base = data_root if data_root is not None else (os.environ.get("VLBENCH_DATA") or None)
    return [Path(base) / folder, Path(base)] if base is not None else []


NO_ROOT = "no --data-root given and VLBENCH_DATA unset"
LOCAL_COPY_HINT = ("point at a copy with --data-root PATH (a folder holding {folder}/) "
                   "or the VLBENCH_DATA environment variable")


def find_in_roots(spec, data_root: str | None, names: Sequence[str], want_dir: bool, label: str,
                  what: str | None = None) -> tuple[Path, Path]:
    """(root, place) for the first data root holding one of ``names`` (relative paths, tried
    in order; a folder when ``want_dir``, else a file), or a DatasetError naming every place."""
    looked = []
    for root in data_roots(spec.folder, data_root):
        for name in names:
            place = root / name
            looked.append(place)
            if place.is_dir() if want_dir else place.is_file():
                return root, place
    where = ", ".join(map(str, looked)) or NO_ROOT
    what = what or names[0] + ("/" if want_dir else "")
    raise DatasetNotFound(f"{label}: {what} not found ({where})", LOCAL_COPY_HINT.format(folder=spec.folder))


def files_probe(names_of: Callable[[Any], Sequence[str]], what: str | None = None):
    """A Format's ``probe``: None when a data root holds one of the files ``names_of(spec)``
    (tried in order), else why it cannot be loaded here (the places looked at)."""

    def probe(spec, data_root: str | None) -> str | None:
        try:
            find_in_roots(spec, data_root, names_of(spec), False, spec.name, what)
        except DatasetError as exc:
            return exc.reason
        return None

    return probe


def fingerprint(*parts: Any) -> str:
    """Short stable hash of JSON-serialisable parts (revision, split, subset, ...)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def subset_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """Deterministic sorted subset of ``range(n)`` of size ``limit`` (all when limit is None).

    >>> subset_indices(10, 3, seed=0)
    [0, 6, 9]
    """
    if limit is None or limit >= n:
        return list(range(n))
    if limit <= 0:
        raise DatasetError(f"--limit must be positive, got {limit}")
    import random

    rng = random.Random(seed)
    return sorted(rng.sample(range(n), limit))


def restrict_retrieval(data: RetrievalData, keep_images: Sequence[int]) -> RetrievalData:
    """Keep only the given images and their captions, re-indexing the ground truth."""
    remap = {old: new for new, old in enumerate(keep_images)}
    caps, gt = [], []
    for cap, img in zip(data.captions, data.caption_to_image):
        if img in remap:
            caps.append(cap)
            gt.append(remap[img])
    return RetrievalData(
        name=data.name, split=data.split, images=data.images.subset(keep_images), captions=caps,
        caption_to_image=gt, fingerprint=fingerprint(data.fingerprint, list(keep_images)), info=dict(data.info),
        image_groups={g: [labels[i] for i in keep_images] for g, labels in data.image_groups.items()},
        image_ids=[data.image_ids[i] for i in keep_images] if data.image_ids else [])


def restrict_classification(data: ClassificationData, keep: Sequence[int]) -> ClassificationData:
    """Keep only the given images (and labels); every class and template stays."""
    return ClassificationData(
        name=data.name, split=data.split, images=data.images.subset(keep), labels=[data.labels[i] for i in keep],
        classnames=data.classnames, templates=data.templates,
        fingerprint=fingerprint(data.fingerprint, list(keep)), info=dict(data.info))


def apply_limit(data: RetrievalData | ClassificationData, limit: int | None, seed: int,
                name: str | None = None) -> RetrievalData | ClassificationData:
    """A seeded subset of ``limit`` images, recorded in ``info["subset"]`` (and in the
    fingerprint whenever it drops anything). ``name`` names a manifest subset."""
    if limit is None:
        return data
    if hasattr(data, "limited"):  # a view with its own unit of subsetting (caption selection: items)
        return data.limited(limit, seed, name)
    keep = subset_indices(len(data.images), limit, seed)
    if len(keep) < len(data.images):
        restrict = restrict_retrieval if isinstance(data, RetrievalData) else restrict_classification
        data = restrict(data, keep)
    record = {"limit": limit, "seed": seed, **({"name": name} if name else {})}
    previous = data.info.get("subset")
    data.info["subset"] = record if previous is None else {**record, "within": previous}
    return data

