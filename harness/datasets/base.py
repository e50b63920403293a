"""Dataset records shared by every loader. No torch here: images load lazily with PIL."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Sequence


class TaskKind(str, Enum):
    RETRIEVAL = "retrieval"
    ZEROSHOT = "zeroshot"


class DatasetError(RuntimeError):
    """A dataset cannot be used as asked; the message names the file/split and says why."""


def load_rgb(path: str | Path):
    """Open an image as RGB (greyscale, CMYK and alpha are converted)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


@dataclass
class ImageSet:
    """Lazily loaded images: a list of paths, opened only when an item is asked for."""

    paths: list[Path]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int):
        return load_rgb(self.paths[index])

    def key(self, index: int) -> str:
        return self.paths[index].name


@dataclass
class RetrievalData:
    """Images, captions and ground truth: ``caption_to_image[j]`` is the image of caption j."""

    name: str
    split: str
    images: ImageSet
    captions: list[str]
    caption_to_image: list[int]
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)  # subset seed, dropped counts, ...

    def __post_init__(self) -> None:
        if len(self.captions) != len(self.caption_to_image):
            raise DatasetError(f"{self.name}/{self.split}: captions and ground truth differ in length")
        n = len(self.images)
        bad = [i for i in self.caption_to_image if not 0 <= i < n]
        if bad:
            raise DatasetError(f"{self.name}/{self.split}: caption points at missing image index {bad[0]}")


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


@dataclass(frozen=True)
class DatasetRequest:
    """What a runner asks a dataset loader for."""

    split: str
    task: TaskKind
    data_root: str | None = None  # root of local datasets (one folder per dataset)
    cache_dir: str | None = None  # where generated/derived data may be written
    limit: int | None = None      # deterministic subset of this many images
    seed: int = 0


@dataclass(frozen=True)
class DatasetMeta:
    """Cheap, registered description of a dataset; ``loader`` reads or generates it."""

    name: str
    tasks: tuple[TaskKind, ...]
    splits: tuple[str, ...]
    default_split: str
    loader: Callable[[DatasetRequest], RetrievalData | ClassificationData]
    description: str = ""
    license: str = "unknown"
    citation: str = ""
    source: str = ""
    offline: bool = False  # available on a fresh machine with no network
    aliases: tuple[str, ...] = ()

    def load(self, request: DatasetRequest) -> RetrievalData | ClassificationData:
        if request.split not in self.splits:
            raise DatasetError(
                f"dataset {self.name!r} has no split {request.split!r}; splits: {', '.join(self.splits)}"
            )
        if request.task not in self.tasks:
            raise DatasetError(
                f"dataset {self.name!r} has no {request.task.value} view; it offers: "
                + ", ".join(t.value for t in self.tasks)
            )
        return self.loader(request)


def fingerprint(*parts: Any) -> str:
    """Short stable hash of JSON-serialisable parts (revision, split, subset, ...)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def subset_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """Deterministic sorted subset of ``range(n)`` of size ``limit`` (all when limit is None)."""
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
        name=data.name,
        split=data.split,
        images=ImageSet([data.images.paths[i] for i in keep_images]),
        captions=caps,
        caption_to_image=gt,
        fingerprint=fingerprint(data.fingerprint, list(keep_images)),
        info=dict(data.info),
    )


# Splits that may load with images missing (dropped and counted); evaluation splits must be
# complete, or scores would silently stop being comparable with published ones.
PARTIAL_OK_SPLITS = frozenset({"train"})


def assemble_retrieval(name: str, split: str, images: list[tuple[str, Path | None, list[str]]], where: str,
                       hint: str, fingerprint_parts: tuple, info: dict[str, Any],
                       request: DatasetRequest) -> RetrievalData:
    """The policy every retrieval loader shares, applied to ``(label, path or None, captions)``
    per listed image: missing images fail an evaluation split (naming how many and ``where``)
    and are dropped with a warning from a training split; images without captions are
    dropped with a warning; both counts go into ``info``; ``--limit`` draws a seeded subset."""
    import warnings

    missing = [label for label, path, _ in images if path is None]
    if missing:
        msg = (f"{name}/{split}: {len(missing)} of {len(images)} images are missing {where} "
               f"(e.g. {', '.join(missing[:3])})")
        if split not in PARTIAL_OK_SPLITS:
            raise DatasetError(f"{msg}; the {split} split must be complete to give comparable scores. "
                               f"Put the images there, or {hint}")
        if len(missing) == len(images):
            raise DatasetError(f"{msg}; nothing left to load. Put the images there, or {hint}")
        warnings.warn(f"{msg}; they are dropped", stacklevel=3)
    kept = [(path, caps) for _, path, caps in images if path is not None]
    no_caps = [path.name for path, caps in kept if not caps]
    if no_caps:
        warnings.warn(f"{name}/{split}: {len(no_caps)} image(s) have no caption and are dropped "
                      f"(e.g. {', '.join(no_caps[:3])})", stacklevel=3)
        kept = [(path, caps) for path, caps in kept if caps]
    pairs = [(cap, i) for i, (_, caps) in enumerate(kept) for cap in caps]
    data = RetrievalData(
        name=name, split=split, images=ImageSet([path for path, _ in kept]),
        captions=[c for c, _ in pairs], caption_to_image=[i for _, i in pairs],
        fingerprint=fingerprint(name, split, *fingerprint_parts, len(kept), len(pairs)),
        info={**info, "dropped_missing_images": len(missing), "dropped_images_without_captions": len(no_caps)})
    if request.limit is not None:
        keep = subset_indices(len(kept), request.limit, request.seed)
        if len(keep) < len(kept):
            data = restrict_retrieval(data, keep)
        data.info["subset"] = {"limit": request.limit, "seed": request.seed}
    return data
