"""``--model captions:FILE``: captions made elsewhere, in the COCO caption evaluation's result
format (``[{"image_id": 391895, "caption": "a man riding a bike"}, ...]``, as lmms-eval and
COCO users hand results around), scored by the ``captioning`` task like any captioner's.

An ``image_id`` names a dataset image by its key, its file name, its file stem, or the integer
at the end of its stem (COCO's ids: ``COCO_val2014_000000391895.jpg`` is 391895; a Flickr
image ``1000092795.jpg`` is 1000092795), or, where the dataset keeps its source's own ids,
that id instead of the stem's integer (NoCaps' integer ``id``, as EvalAI submissions give it).
Every image of the evaluated split needs exactly one caption; an id that names no image, two
entries for one image, or an image with none is an error naming which. On a ``--limit``
subset, ids of images outside it are expected and counted in the record. The run key hashes the file's contents (``local_files``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import UserError
from harness.core.interfaces import ModelKind, ModelMeta

CAPTIONS_PREFIX = "captions:"


class CaptionFileError(UserError):
    """A captions file that cannot be read or does not match the dataset (one line)."""


def image_names(key: str, own_id: str | None = None) -> list[str]:
    """The names an ``image_id`` may give for the image keyed ``key``. A dataset that keeps its
    source's own image ids (NoCaps' integer ``id``) gives ``own_id``, which then replaces the
    integer read off the stem (a hex Open Images name ending in digits would collide with them).

    >>> image_names("val2014/COCO_val2014_000000391895.jpg")
    ['val2014/COCO_val2014_000000391895.jpg', 'COCO_val2014_000000391895.jpg', 'COCO_val2014_000000391895', '391895']
    >>> image_names("0013ea2087020901.jpg", own_id="0")
    ['0013ea2087020901.jpg', '0013ea2087020901', '0']
    """
    path = Path(key)
    names = [key, path.name, path.stem]
    digits = re.search(r"(\d+)$", path.stem)
    if own_id is not None:
        names.append(own_id)
    elif digits:
        names.append(str(int(digits.group(1))))
    return list(dict.fromkeys(names))


def read_predictions(path: Path) -> dict[str, str]:
    """``{image_id as text: caption}``; a malformed file or entry, or a repeated id, is named."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CaptionFileError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(entries, list):
        raise CaptionFileError(f"{path}: expected a JSON list of {{\"image_id\", \"caption\"}} objects "
                               f"(COCO's result format), got a {type(entries).__name__}")
    out: dict[str, str] = {}
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image_id" not in entry or "caption" not in entry:
            raise CaptionFileError(f"{path}: entry {n} is not an object with image_id and caption")
        image_id, caption = entry["image_id"], entry["caption"]
        if isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
            raise CaptionFileError(f"{path}: entry {n}: image_id must be an integer or a string")
        if not isinstance(caption, str):
            raise CaptionFileError(f"{path}: entry {n} (image_id {image_id!r}): caption is not a string")
        key = str(image_id)
        if key in out:
            raise CaptionFileError(f"{path}: image_id {image_id!r} appears more than once (entry {n})")
        out[key] = caption
    return out


def match(predictions: dict[str, str], keys: list[str], path: Path, subset: bool,
          own_ids: list[str] | None = None) -> tuple[list[str], int]:
    """Each image's caption in image order, and how many ids lie outside a subset."""
    index: dict[str, set[int]] = {}
    for i, key in enumerate(keys):
        for name in image_names(key, own_ids[i] if own_ids else None):
            index.setdefault(name, set()).add(i)
    caption_of: dict[int, str] = {}
    outside = 0
    for image_id, caption in predictions.items():
        hits = index.get(image_id, set())
        if len(hits) > 1:
            raise CaptionFileError(f"{path}: image_id {image_id!r} names {len(hits)} images "
                                   f"({', '.join(sorted(keys[i] for i in hits)[:3])}): use the file name")
        if not hits:
            if subset:
                outside += 1
                continue
            raise CaptionFileError(f"{path}: image_id {image_id!r} names no image of the dataset "
                                   f"(e.g. {keys[0]!r}, matched by key, file name, stem or its integer)")
        (i,) = hits
        if i in caption_of:
            raise CaptionFileError(f"{path}: image {keys[i]} has two captions (image_id {image_id!r} and another id)")
        caption_of[i] = caption
    missing = [keys[i] for i in range(len(keys)) if i not in caption_of]
    if missing:
        raise CaptionFileError(f"{path}: no caption for image {missing[0]} ({len(missing)} of {len(keys)} "
                               "images have none)")
    return [caption_of[i] for i in range(len(keys))], outside


@dataclass
class CaptionFile:
    """The loaded "model": captions read from a file, matched to the data's images."""

    name: str
    path: Path
    checkpoint: dict
    last_generated_tokens: int = 0

    def captions_for(self, data) -> tuple[list[str], dict]:
        keys = [data.images.key(i) for i in range(len(data.images))]
        captions, outside = match(read_predictions(self.path), keys, self.path, "subset" in data.info,
                                  getattr(data, "image_ids", None))
        return captions, {"generation": f"none: captions read from {self.path.name} (COCO result format)",
                          **({"captions_outside_subset": outside} if outside else {})}


def captions_meta(name: str, resolve=None) -> ModelMeta:
    path = Path(name[len(CAPTIONS_PREFIX):]).expanduser()
    if not path.is_file():
        raise CaptionFileError(f"{name}: no such file {str(path)!r} (expected COCO's result format: "
                               '[{"image_id": ..., "caption": ...}])')

    def load(options):
        from harness.models.weights import content_digest

        return CaptionFile(name, path, {"id": path.name, "sha256": content_digest(path)})

    return ModelMeta(name=name, family="captions-file", kind=ModelKind.CAPTIONER,
                     source=f"captions file {path.name} (COCO result format)", loader=load, offline=True,
                     local_files=lambda weights: [path], description="captions made elsewhere, scored as given")


def _register() -> None:
    from harness.models import register_prefix

    register_prefix(CAPTIONS_PREFIX, captions_meta)


_register()
