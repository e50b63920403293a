"""COCO captions in the official release layout (Lin et al. 2014), local copy.

Layout (``annotations_trainval{2014,2017}.zip`` and the image zips, unzipped into one folder)::

    <root>/annotations/captions_{train,val}{2014,2017}.json
    <root>/{train,val}{2014,2017}/<file_name>          (or <root>/images/<split>/<file_name>)

A manifest split maps to a release split through ``source_split`` (``val`` -> ``val2017``).
The JSON holds ``images`` ({id, file_name}) and ``annotations`` ({id, image_id, caption}).
Images keep the file's order, captions the annotation order. Skipped, counted in ``info`` and
reported in one warning each (errors under ``--strict``): captions whose ``image_id`` is not
an image of the file (a caption for an image not in the split), repeated annotation ids,
repeated image ids (first kept), malformed entries and empty captions. Image files follow
the shared policy of :mod:`harness.datasets.assemble`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from . import fields
from .assemble import assemble_retrieval, skip
from .base import (
    LOCAL_COPY_HINT,
    DatasetError,
    DatasetRequest,
    Format,
    RetrievalData,
    TaskKind,
    find_in_roots,
)
from .fields import relative_path

ANN_DIRS = ("annotations", ".")
HINT = LOCAL_COPY_HINT


def _release_split(spec, split: str) -> str:
    s = spec.splits[split]
    return s.source_split or split


def find_annotation(spec, split: str, data_root: str | None) -> tuple[Path, Path]:
    fname = f"captions_{_release_split(spec, split)}.json"
    return find_in_roots(spec, data_root, [fname if d == "." else f"{d}/{fname}" for d in ANN_DIRS], False,
                         spec.name)


def _idx(nums: list[int]) -> str:
    return ", ".join(map(str, nums[:8])) + (" ..." if len(nums) > 8 else "")


def read_captions(obj: Any, path: Path, name: str, strict: bool) -> tuple[list[tuple[str, list[str]]], dict[str, int]]:
    """(file_name, captions) per image in file order, and the counts of what was skipped."""
    if not isinstance(obj, dict) or not isinstance(obj.get("images"), list) \
            or not isinstance(obj.get("annotations"), list):
        raise DatasetError(f"{path}: not a COCO captions file (needs 'images' and 'annotations' lists)")
    bad: dict[str, list[int]] = {"malformed_image": [], "duplicate_image": [], "malformed": [], "empty": [],
                                 "orphan": [], "duplicate": []}
    by_id: dict[int, tuple[str, list[str]]] = {}
    for i, im in enumerate(obj["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
            bad["malformed_image"].append(i)
        elif im["id"] in by_id:
            bad["duplicate_image"].append(i)
        else:
            by_id[im["id"]] = (relative_path(im["file_name"], f"{path}: images[{i}]: file_name"), [])
    seen_ann: set[Any] = set()
    for i, ann in enumerate(obj["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("image_id"), int) or "caption" not in ann:
            bad["malformed"].append(i)
            continue
        if ann.get("id") is not None and ann["id"] in seen_ann:
            bad["duplicate"].append(i)
            continue
        seen_ann.add(ann.get("id"))
        if ann["caption"] is not None and not isinstance(ann["caption"], str):
            fields.text(ann["caption"], f"{path}: annotations[{i}]: caption")  # names the wrong type
        text = ann["caption"].strip() if isinstance(ann["caption"], str) else ""
        if ann["image_id"] not in by_id:
            bad["orphan"].append(i)
        elif not text:
            bad["empty"].append(i)
        else:
            by_id[ann["image_id"]][1].append(text)
    what = {"malformed_image": "malformed image entr(ies)", "duplicate_image": "repeated image id(s), first kept",
            "malformed": "malformed annotation(s)", "empty": "empty caption(s)",
            "orphan": "caption(s) for an image id not in the file", "duplicate": "repeated annotation id(s)"}
    for kind, nums in bad.items():
        if nums:
            section = "images" if kind.endswith("_image") else "annotations"
            skip(f"{name}: {len(nums)} {what[kind]} skipped in {path}, {section}[{_idx(nums)}]", strict)
    counts = {"dropped_malformed_image_entries": len(bad["malformed_image"]),
              "dropped_duplicate_images": len(bad["duplicate_image"]),
              "dropped_malformed_annotations": len(bad["malformed"]), "dropped_empty_captions": len(bad["empty"]),
              "dropped_captions_for_unknown_images": len(bad["orphan"]),
              "dropped_duplicate_annotations": len(bad["duplicate"])}
    return list(by_id.values()), counts


def find_image(root: Path, release_split: str, file_name: str, listings: dict[Path, set[str]]) -> Path | None:
    """``file_name`` in ``<root>/<release>/``, ``<root>/images/<release>/`` or ``<root>/images/``
    (COCO's and NoCaps' folder layouts); each folder is listed once into ``listings``."""
    for folder in (root / release_split, root / "images" / release_split, root / "images"):
        if folder not in listings:
            try:
                listings[folder] = {p.name for p in folder.iterdir()}
            except OSError:
                listings[folder] = set()
        if file_name in listings[folder]:
            return folder / file_name
    return None


def load(spec, request: DatasetRequest) -> RetrievalData:
    if request.task is not TaskKind.RETRIEVAL:
        raise DatasetError(f"{spec.name} has only a retrieval view, not {request.task.value}")
    root, path = find_annotation(spec, request.split, request.data_root)
    blob = path.read_bytes()
    try:
        obj = json.loads(blob.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    items, counts = read_captions(obj, path, spec.name, request.strict)
    release = _release_split(spec, request.split)
    listings: dict[Path, set[str]] = {}
    images = [(fn, find_image(root, release, fn, listings), caps) for fn, caps in items]
    sha = hashlib.sha256(blob).hexdigest()
    info = {"root": str(root), "annotation_file": str(path), "sha256": {path.name: sha}, **counts}
    return assemble_retrieval(spec.name, request.split, images, f"(looked in {', '.join(map(str, listings))})",
                              HINT.format(folder=spec.folder), (sha, release), info, request,
                              partial_ok=spec.splits[request.split].partial_ok)


def images_probe(release_of, annotation_of=None):
    """A probe for a caption file + image folder layout (COCO's, NoCaps'): the default split's
    annotation file (``annotation_of``, default :func:`find_annotation`), then an image folder
    :func:`find_image` looks in (``release_of(spec, split)`` names the release folder)."""

    def probe(spec, data_root: str | None) -> str | None:
        try:
            root, _ = (annotation_of or find_annotation)(spec, spec.default_split, data_root)
        except DatasetError as exc:
            return exc.reason
        release = release_of(spec, spec.default_split)
        if not any((root / d).is_dir() for d in (release, f"images/{release}", "images")):
            return f"image folder {root / release} not found"
        return None

    return probe


FORMAT = Format(name="coco_captions", tasks=(TaskKind.RETRIEVAL,), load=load, probe=images_probe(_release_split))
