"""Image classification from an ImageFolder layout (one sub-folder per class), local copy.

Layout: ``<root>/<split>/<class>/<image>`` (the split's folder is its ``source_split`` when
the manifest gives one, e.g. ImageNet ``val`` after the usual valprep re-arrangement into
``val/<wnid>/``). Labels follow the sorted class-folder names, as torchvision's ImageFolder
does (for ImageNet, sorted wnids are the standard class-index order); class names come from the manifest (a curated
list such as ``imagenet1k``, a names
file, or the folder names). Files whose extension is not an image's are ignored and
counted (``info["ignored_files"]``); image files follow :mod:`harness.datasets.assemble`.
"""

from __future__ import annotations

from pathlib import Path

from .assemble import assemble_classification
from .base import (
    LOCAL_COPY_HINT,
    ClassificationData,
    DatasetError,
    DatasetRequest,
    Format,
    TaskKind,
    find_in_roots,
)
from .resources import resolve_classnames, templates

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
HINT = LOCAL_COPY_HINT


def split_dir_name(spec, split: str) -> str:
    s = spec.splits.get(split)
    return (s.source_split if s is not None and s.source_split else split)


def find_split_dir(spec, split: str, data_root: str | None) -> tuple[Path, Path]:
    """(dataset root, split folder) or raise naming the places looked at."""
    return find_in_roots(spec, data_root, [split_dir_name(spec, split)], True, f"{spec.name}/{split}",
                         "split folder")


def load(spec, request: DatasetRequest) -> ClassificationData:
    if request.task is not TaskKind.ZEROSHOT:
        raise DatasetError(f"{spec.name} has only a zeroshot (classification) view")
    root, split_dir = find_split_dir(spec, request.split, request.data_root)
    folders = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(f"{spec.name}/{request.split}: no class folders in {split_dir}")
    names = resolve_classnames(spec, root, folders)
    items, ignored, empty = [], 0, []
    for label, cls in enumerate(folders):
        files = sorted(p for p in (split_dir / cls).iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        ignored += len(files) - len(images)
        if not images:
            empty.append(cls)
        items += [(f"{cls}/{p.name}", p, label) for p in images]
    info = {"root": str(root), "split_dir": str(split_dir), "classes_without_images": empty[:20],
            "n_classes_without_images": len(empty), "ignored_files": ignored}
    return assemble_classification(spec.name, request.split, items, names, templates(spec.classes["templates"]),
                                   f"in {split_dir}", HINT.format(folder=spec.folder), tuple(folders), info,
                                   request, partial_ok=spec.splits[request.split].partial_ok)


def probe(spec, data_root: str | None) -> str | None:
    try:
        find_split_dir(spec, spec.default_split, data_root)
    except DatasetError as exc:
        return exc.reason
    return None


FORMAT = Format(name="imagefolder", tasks=(TaskKind.ZEROSHOT,), load=load, probe=probe, needs_classes=True)
