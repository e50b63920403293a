"""NoCaps (Agrawal et al. 2019, nocaps.org) in its published layout, local copy.

Layout (the v0.1 files of nocaps.org/download, images fetched from Open Images by their
``coco_url`` / ``open_images_id``)::

    <root>/nocaps_val_4500_captions.json      val: images + 10 reference captions each
    <root>/nocaps_val_image_info.json         val, as first published: images only
    <root>/nocaps_test_image_info.json        test: images only (no "annotations")
    <root>/{val,test}/<file_name>             Open Images files (or <root>/images/<split>/)

Both JSON files are COCO-style: ``{"licenses", "info", "images": [{"id", "file_name",
"coco_url", "height", "width", "open_images_id", "domain", ...}], "annotations": [{"image_id",
"id", "caption"}]}``. Each image's ``domain`` says how its objects relate to COCO's 80 classes:
``in-domain`` (only COCO classes), ``near-domain`` (COCO and novel classes), ``out-domain``
(only novel classes); the evaluation server reports every metric per domain and overall
("entire"). The loader declares that grouping (``image_groups["domain"]``), so the captioning
task reports each domain's own corpus scores beside the overall ones.

nocaps.org first kept every reference on its evaluation server (EvalAI); the val references
were published later (``nocaps_val_4500_captions.json``, the file LAVIS and lmms-eval read), the
test references never were. A file with no ``annotations`` (the test file, or val's image-info
file) is an error saying so and what to use instead. The
caption parsing and its skip policy are COCO's (:func:`harness.datasets.coco_captions.read_captions`);
an image with no or an unknown ``domain`` is an error naming its entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from .assemble import assemble_retrieval
from .base import LOCAL_COPY_HINT, DatasetError, DatasetRequest, Format, RetrievalData, TaskKind, apply_limit, find_in_roots
from .coco_captions import find_image, images_probe, read_captions

DOMAINS = ("in-domain", "near-domain", "out-domain")
GROUPING = "domain"  # the image group the captioning task reports per label
# the published file of each split, in the order looked for (val's image-info file has no captions either)
FILES = {"val": ("nocaps_val_4500_captions.json", "nocaps_val_image_info.json"),
         "test": ("nocaps_test_image_info.json",)}
SERVER_ONLY = ("{path} holds image information only (no \"annotations\"): nocaps keeps the references of "
               "this split on its evaluation server (EvalAI), so {name}/{split} has no reference caption to "
               "score captions or retrieval against here; {fix}")
FIXES = {"val": "the val references were published later as nocaps_val_4500_captions.json (the file LAVIS and "
                "lmms-eval read): put that file there",
         "test": "use --split val ({val} with 10 references each)"}


def _release(spec, split: str) -> str:
    return spec.splits[split].source_split or split


def find_annotation(spec, split: str, data_root: str | None) -> tuple[Path, Path]:
    names = FILES.get(_release(spec, split))
    if names is None:
        raise DatasetError(f"{spec.name}: no published nocaps file for split {split!r} (known: {', '.join(FILES)})")
    return find_in_roots(spec, data_root, [p for n in names for p in (n, f"annotations/{n}")], False, spec.name)


def read_json(path: Path) -> tuple[Any, str]:
    blob = path.read_bytes()
    try:
        return json.loads(blob.decode("utf-8-sig")), hashlib.sha256(blob).hexdigest()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def image_domains(obj: dict, path: Path) -> dict[str, tuple[str, str]]:
    """``{file_name: (domain, image id)}`` of every image entry ``read_captions`` keeps (the
    first of a repeated id); a missing or unknown domain is named with its entry."""
    out: dict[str, tuple[str, str]] = {}
    seen: set[int] = set()
    for i, im in enumerate(obj["images"]):
        if not isinstance(im, dict) or not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str) \
                or im["id"] in seen:
            continue
        seen.add(im["id"])
        domain = im.get("domain")
        if domain not in DOMAINS:
            what = "has no \"domain\"" if domain is None else f"has domain {domain!r}"
            raise DatasetError(f"{path}: images[{i}] (id {im['id']}, {im['file_name']}) {what}; "
                               f"nocaps images are {', '.join(DOMAINS)}")
        out[im["file_name"]] = (domain, str(im["id"]))
    return out


def load(spec, request: DatasetRequest) -> RetrievalData:
    if request.task is not TaskKind.RETRIEVAL:
        raise DatasetError(f"{spec.name} has only a retrieval view (read by captioning), not {request.task.value}")
    root, path = find_annotation(spec, request.split, request.data_root)
    obj, sha = read_json(path)
    if isinstance(obj, dict) and isinstance(obj.get("images"), list) and "annotations" not in obj:
        val = spec.splits.get("val")
        fix = FIXES.get(_release(spec, request.split), FIXES["test"]).format(
            val=f"{val.images} images" if val and val.images else "its images")
        raise DatasetError(SERVER_ONLY.format(path=path, name=spec.name, split=request.split, fix=fix))
    items, counts = read_captions(obj, path, spec.name, request.strict)
    domains = image_domains(obj, path)
    release = _release(spec, request.split)
    listings: dict[Path, set[str]] = {}
    images = [(fn, find_image(root, release, fn, listings), caps) for fn, caps in items]
    domain_of = {p: domains[fn] for fn, p, _ in images if p is not None}
    info = {"root": str(root), "annotation_file": str(path), "sha256": {path.name: sha}, **counts}
    data = assemble_retrieval(spec.name, request.split, images, f"(looked in {', '.join(map(str, listings))})",
                              LOCAL_COPY_HINT.format(folder=spec.folder), (sha, release), info,
                              replace(request, limit=None), partial_ok=spec.splits[request.split].partial_ok)
    labels = [domain_of[p][0] for p in data.images.paths]
    # the integer ids result files use (EvalAI's {"image_id": 0, "caption": ...}; captions:FILE)
    data = replace(data, image_groups={GROUPING: labels}, image_ids=[domain_of[p][1] for p in data.images.paths],
                   info={**data.info, "domains": {d: labels.count(d) for d in DOMAINS}})
    return apply_limit(data, request.limit, request.seed)


FORMAT = Format(name="nocaps", tasks=(TaskKind.RETRIEVAL,), load=load, probe=images_probe(_release, find_annotation))
