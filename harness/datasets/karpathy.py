"""COCO and Flickr30k retrieval on the Karpathy splits (Karpathy & Fei-Fei 2015), local copies.

Annotation formats (told apart by content, not by name):

* **Karpathy split JSON** -- ``dataset_coco.json`` / ``dataset_flickr30k.json``:
  ``{"images": [{"filepath", "filename", "split", "sentences": [{"raw": ...}, ...]}, ...]}``
  with ``split`` in train/restval/val/test. ``restval`` is counted as train, as everyone
  does (COCO train = 82,783 train + 30,504 restval = 113,287 images).
* **Per-split JSON** (LAVIS/BLIP style) -- ``coco_karpathy_{split}.json`` (also accepted:
  ``coco_{split}_karpathy.json``), ``flickr30k_{split}.json`` / ``flickr30k_karpathy_{split}.json``:
  a list of ``{"image": "val2014/COCO_val2014_....jpg", "caption": [...] or "..."}``; entries
  naming the same image are merged (the LAVIS train files hold one caption per entry).
* **Flickr30k official captions** -- ``results_20130124.token`` (``<image>#<n> TAB <caption>``,
  parsed by :func:`harness.datasets.flickr8k.read_tokens`) with ``dataset_flickr30k.json``
  defining the splits. When a token file is present, captions come from it (the official
  source) and the JSON's ``sentences`` are ignored; ``info["captions_from"]`` says which.

* **Flickr30k official captions with an image-name list per split** --
  ``flickr30k_karpathy_{split}.txt`` (or ``flickr30k_{split}.txt``), one image file name a
  line (e.g. the 1,000 Karpathy test ids), read with ``results_20130124.token``.

The full Karpathy JSON wins over per-split files when both exist.

Layout: the root is ``<data_root>/<name>`` or ``<data_root>`` (``--data-root``, else
``VLBENCH_DATA``); annotation files sit in the root or in ``annotations/``, ``karpathy/`` or
``text/`` below it. Images: COCO under ``<root>/{val2014,train2014}/`` (the ``filepath``
field; ``<root>/images/...`` works too, and so does a 2017 copy, ``{train,val}2017/<id>.jpg``);
Flickr30k under ``<root>/flickr30k-images/`` or ``<root>/images/``.

Expected sizes (images / captions; every sentence is kept, some COCO images have 6-7):
COCO test 5,000 / 25,010, val 5,000 / 25,010, train (with restval) 113,287 / 566,747;
Flickr30k test 1,000 / 5,000, val 1,014 / 5,070, train 29,000 / 145,000.

Missing and bad images follow the shared policy (:mod:`harness.datasets.assemble`): folders
are listed once, files checked cheaply without decoding; train may drop them (warning,
counted in ``info``), val and test must be complete or the load fails, saying how many are
missing and where it looked. Malformed entries, repeated images and empty captions are
skipped, counted in ``info`` and reported in one warning naming the file and the entry
indices (0-based positions in the JSON list); ``--strict`` fails instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .assemble import assemble_retrieval, skip
from .base import (
    NO_ROOT,
    DatasetError,
    DatasetNotFound,
    DatasetRequest,
    Format,
    RetrievalData,
    TaskKind,
    data_roots,
)
from .fields import relative_path, text
from .flickr8k import read_tokens

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"dev": "val", "validation": "val", "restval": "train"}
KARPATHY_TO_SPLIT = {"train": "train", "restval": "train", "val": "val", "test": "test"}
ANN_DIRS = (".", "annotations", "karpathy", "text")
HINT = "point at a copy with --data-root PATH (a folder holding {name}/) or the VLBENCH_DATA environment variable"
_COCO2014 = re.compile(r"COCO_(?:train|val)2014_0*(\d+)\.jpg$")


@dataclass(frozen=True)
class Source:
    """What differs between COCO and Flickr30k: file names and image folders."""

    name: str
    full_json: str                    # Karpathy JSON with every split
    split_json: tuple[str, ...]       # per-split file name patterns ({split})
    image_dirs: tuple[str, ...]       # folders (relative to root) an image may sit in
    token_file: str | None = None     # official caption file (Flickr30k)
    id_lists: tuple[str, ...] = ()    # per-split image-name lists ({split}) read with the token file


COCO = Source("coco", "dataset_coco.json", ("coco_karpathy_{split}.json", "coco_{split}_karpathy.json"),
              ("val2014", "train2014", "images/val2014", "images/train2014", "images", "."))
FLICKR30K = Source("flickr30k", "dataset_flickr30k.json", ("flickr30k_{split}.json", "flickr30k_karpathy_{split}.json"),
                   ("flickr30k-images", "images", "flickr30k_images", "."), token_file="results_20130124.token",
                   id_lists=("flickr30k_karpathy_{split}.txt", "flickr30k_{split}.txt"))
SOURCES = {s.name: s for s in (COCO, FLICKR30K)}


def _hint(src: Source) -> str:
    return HINT.format(name=src.name)


def _canonical(src: Source, split: str) -> str:
    s = SPLIT_ALIASES.get(split, split)
    if s not in SPLITS:
        raise DatasetError(f"{src.name} has no split {split!r}; splits: {', '.join(SPLITS)} "
                           "(aliases: dev/validation -> val, restval -> train)")
    return s


def candidate_roots(src: Source, data_root: str | os.PathLike | None, folder: str | None = None) -> list[Path]:
    return data_roots(folder or src.name, None if data_root is None else str(data_root))


def _ann_names(src: Source, split: str) -> list[str]:
    return [src.full_json] + [p.format(split=split) for p in (*src.split_json, *src.id_lists)]


def find_annotations(src: Source, split: str, data_root: str | os.PathLike | None,
                     folder: str | None = None) -> tuple[Path, Path]:
    """Return (root, annotation file): the first root holding the full Karpathy JSON, else a
    per-split file for ``split``; raise naming every place looked at."""
    looked: list[Path] = []
    for root in candidate_roots(src, data_root, folder):
        for fname in _ann_names(src, split):
            for d in ANN_DIRS:
                place = root / fname if d == "." else root / d / fname
                looked.append(place)
                if place.is_file():
                    return root, place
    where = "\n  ".join(map(str, looked)) or "(no --data-root given and VLBENCH_DATA unset)"
    raise DatasetNotFound(f"{src.name}: no annotations found for split {split!r}; looked for "
                          f"{' / '.join(_ann_names(src, split))} in:\n  {where}", _hint(src), sep="\n")


def _find_token(src: Source, root: Path) -> Path | None:
    if src.token_file is None:
        return None
    for d in ANN_DIRS:
        place = root / src.token_file if d == "." else root / d / src.token_file
        if place.is_file():
            return place
    return None


def _parse_json(path: Path, blob: bytes) -> Any:
    try:
        return json.loads(blob.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def detect_format(obj: Any, path: Path) -> str:
    """'karpathy' (dict with an "images" list) or 'per_split' (list of {"image", "caption"})."""
    if isinstance(obj, dict) and isinstance(obj.get("images"), list):
        return "karpathy"
    if isinstance(obj, list) and (not obj or (isinstance(obj[0], dict) and "image" in obj[0])):
        return "per_split"
    raise DatasetError(f"{path}: neither a Karpathy split JSON ({{\"images\": [...]}}) nor a per-split "
                       "list of {\"image\", \"caption\"} entries")


def _idx(nums: list[int]) -> str:
    return ", ".join(map(str, nums[:8])) + (" ..." if len(nums) > 8 else "")


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) else None


def read_karpathy(obj: dict, path: Path, split: str) -> tuple[list[tuple[str, list[str]]], dict[str, list[int]], dict[str, int]]:
    """Images of ``split`` in file order as (relative path, captions); bad entry indices; split sizes."""
    out: list[tuple[str, list[str]]] = []
    bad: dict[str, list[int]] = {"malformed": [], "empty": [], "unknown_split": [], "duplicate": []}
    sizes: dict[str, int] = {}
    seen: set[str] = set()
    for i, entry in enumerate(obj["images"]):
        if not isinstance(entry, dict) or not _text(entry.get("filename")) or not isinstance(entry.get("split"), str):
            bad["malformed"].append(i)
            continue
        mapped = KARPATHY_TO_SPLIT.get(entry["split"])
        if mapped is None:
            bad["unknown_split"].append(i)
            continue
        sizes[entry["split"]] = sizes.get(entry["split"], 0) + 1
        if mapped != split:
            continue
        rel = "/".join(p for p in (_text(entry.get("filepath")) or "", entry["filename"].strip()) if p)
        relative_path(rel, f"{path}: images[{i}]: filepath/filename")
        if rel in seen:  # the same image listed twice: first entry kept
            bad["duplicate"].append(i)
            continue
        seen.add(rel)
        caps: list[str] = []
        sents = entry.get("sentences") or []
        for k, s in enumerate(sents if isinstance(sents, list) else []):
            value = s.get("raw") if isinstance(s, dict) else s
            if value is not None and not isinstance(value, str):
                text(value, f"{path}: images[{i}]: sentences[{k}]: raw")  # names the wrong type
            raw = _text(value)
            if raw:
                caps.append(raw)
            else:
                bad["empty"].append(i)
        out.append((rel, caps))
    return out, bad, sizes


def read_per_split(obj: list, path: Path) -> tuple[list[tuple[str, list[str]]], dict[str, list[int]]]:
    """Images in first-seen order with all their captions (entries naming one image merged)."""
    groups: dict[str, list[str]] = {}
    bad: dict[str, list[int]] = {"malformed": [], "empty": []}
    for i, entry in enumerate(obj):
        image = _text(entry.get("image")) if isinstance(entry, dict) else None
        if not image or not isinstance(entry.get("caption"), (str, list)):
            bad["malformed"].append(i)
            continue
        relative_path(image, f"{path}: [{i}]: image")
        caps = entry["caption"] if isinstance(entry["caption"], list) else [entry["caption"]]
        slot = groups.setdefault(image, [])
        for c in caps:
            if _text(c):
                slot.append(c.strip())
            else:
                bad["empty"].append(i)
    return list(groups.items()), bad


class _Locator:
    """Finds image files from directory listings only (each folder listed once)."""

    def __init__(self, src: Source, root: Path) -> None:
        self.src, self.root = src, root
        self.listings: dict[Path, set[str]] = {}
        self.looked: dict[Path, None] = {}

    def _has(self, path: Path) -> bool:
        folder = path.parent
        self.looked[folder] = None
        if folder not in self.listings:
            try:
                with os.scandir(folder) as it:
                    self.listings[folder] = {e.name for e in it}
            except OSError:
                self.listings[folder] = set()
        return path.name in self.listings[folder]

    def candidates(self, rel: str) -> list[Path]:
        base = rel.rsplit("/", 1)[-1]
        out = [self.root / rel] if "/" in rel else []
        out += [self.root / d / base if d != "." else self.root / base for d in self.src.image_dirs]
        m = _COCO2014.search(base) if self.src is COCO else None
        if m:  # a COCO 2017 copy holds the same images as <id:012d>.jpg
            out += [self.root / d / f"{int(m.group(1)):012d}.jpg" for d in ("val2017", "train2017")]
        return list(dict.fromkeys(out))

    def find(self, rel: str, where: str) -> Path | None:
        relative_path(rel, where)  # every format's names pass here: none may leave the root
        for p in self.candidates(rel):
            if self._has(p):
                return p
        return None


def _warn_bad(src: Source, path: Path, bad: dict[str, list[int]], strict: bool) -> None:
    what = {"malformed": "malformed entr(ies) skipped (no image name or split)",
            "empty": "empty caption(s) skipped", "unknown_split": "entr(ies) with an unknown split skipped",
            "duplicate": "repeated image entr(ies) skipped, first kept"}
    for kind, nums in bad.items():
        if nums:
            skip(f"{src.name}: {len(nums)} {what.get(kind, kind)} in {path}, entr(ies) {_idx(nums)}", strict)


def _scan(src: Source, request: DatasetRequest, folder: str | None = None) -> dict[str, Any]:
    split = _canonical(src, request.split)
    root, ann_path = find_annotations(src, split, request.data_root, folder)
    blob = ann_path.read_bytes()
    if ann_path.suffix == ".txt":
        return _scan_id_list(src, request, split, root, ann_path, blob)
    obj = _parse_json(ann_path, blob)
    fmt = detect_format(obj, ann_path)
    shas = {ann_path.name: hashlib.sha256(blob).hexdigest()}
    counts: dict[str, Any] = {}
    captions_from = ann_path.name
    if fmt == "karpathy":
        items, bad, sizes = read_karpathy(obj, ann_path, split)
        counts["karpathy_split_sizes"] = sizes
        token_path = _find_token(src, root)
        if token_path is not None:
            tblob = token_path.read_bytes()
            known = {rel.rsplit("/", 1)[-1] for rel, _ in items}
            caps, tcounts = read_tokens(tblob, token_path, known, request.strict, name=src.name)
            tcounts.pop("images_in_no_split", None)  # the token file covers every split
            counts.update(tcounts)
            items = [(rel, [c for _, c in sorted(caps.get(rel.rsplit("/", 1)[-1], {}).items())]) for rel, _ in items]
            shas[token_path.name] = hashlib.sha256(tblob).hexdigest()
            captions_from = token_path.name
            bad["empty"] = []  # the JSON's sentences are not used
    else:
        items, bad = read_per_split(obj, ann_path)
    _warn_bad(src, ann_path, bad, request.strict)
    counts.update({"dropped_malformed_entries": len(bad["malformed"]),
                   "dropped_empty_captions_json": len(bad["empty"]),
                   "dropped_unknown_split_entries": len(bad.get("unknown_split", [])),
                   "dropped_duplicate_entries": len(bad.get("duplicate", []))})
    return {"split": split, "root": root, "ann_path": ann_path, "format": fmt, "shas": shas,
            "captions_from": captions_from, "items": items, "counts": counts,
            "locator": _Locator(src, root)}


def _scan_id_list(src: Source, request: DatasetRequest, split: str, root: Path, ann_path: Path,
                  blob: bytes) -> dict[str, Any]:
    """A split given as image names, one a line (e.g. the 1,000 Karpathy test ids of Flickr30k),
    its captions from the official token file, which must be present."""
    token_path = _find_token(src, root)
    if token_path is None:
        raise DatasetNotFound(f"{src.name}: {ann_path} lists image names, so the official {src.token_file} is "
                              f"needed beside it (in {root} or {root / 'annotations'})", _hint(src))
    names = [ln.strip() for ln in blob.decode("utf-8-sig", errors="replace").splitlines() if ln.strip()]
    unique = list(dict.fromkeys(names))
    if len(unique) < len(names):
        skip(f"{src.name}: {len(names) - len(unique)} repeated image name(s) in {ann_path} skipped, first kept",
             request.strict)
    tblob = token_path.read_bytes()
    caps, counts = read_tokens(tblob, token_path, set(unique), request.strict, name=src.name)
    counts.pop("images_in_no_split", None)  # the token file covers every split
    counts["dropped_duplicate_entries"] = len(names) - len(unique)
    items = [(n, [c for _, c in sorted(caps.get(n, {}).items())]) for n in unique]
    shas = {ann_path.name: hashlib.sha256(blob).hexdigest(), token_path.name: hashlib.sha256(tblob).hexdigest()}
    return {"split": split, "root": root, "ann_path": ann_path, "format": "id_list", "shas": shas,
            "captions_from": token_path.name, "items": items, "counts": counts, "locator": _Locator(src, root)}


def load_source(src: Source, request: DatasetRequest, spec=None) -> RetrievalData:
    """Load one split of ``src`` as RetrievalData (lazy images); see the module docstring."""
    if request.task is not TaskKind.RETRIEVAL:
        raise DatasetError(f"{src.name} has only a retrieval view, not {request.task.value}")
    s = _scan(src, request, spec.folder if spec is not None else None)
    split_spec = spec.splits.get(s["split"]) if spec is not None else None
    split, items, loc = s["split"], s["items"], s["locator"]
    if not items:
        raise DatasetError(f"{src.name}/{split}: {s['ann_path']} lists no images for this split")
    images = [(rel, loc.find(rel, f"{s['ann_path']}: image {rel!r}"), caps) for rel, caps in items]
    info: dict[str, Any] = {
        "root": str(s["root"]), "annotation_file": str(s["ann_path"]), "format": s["format"],
        "captions_from": s["captions_from"], "sha256": s["shas"], **s["counts"],
    }
    return assemble_retrieval(src.name, split, images, f"(looked in {', '.join(map(str, loc.looked))})",
                              _hint(src), (s["shas"],), info, request,
                              partial_ok=split_spec.partial_ok if split_spec is not None else None)


def load_coco(request: DatasetRequest) -> RetrievalData:
    return load_source(COCO, request)


def load_flickr30k(request: DatasetRequest) -> RetrievalData:
    return load_source(FLICKR30K, request)


def _source(spec) -> Source:
    variant = spec.options.get("variant", spec.name)
    if variant not in SOURCES:
        raise DatasetError(f"{spec.origin}: {spec.name}: options.variant must be one of {', '.join(SOURCES)}, "
                           f"got {variant!r}")
    return SOURCES[variant]


def probe(spec, data_root: str | None) -> str | None:
    """Cheap availability: an annotation file for the default split is found."""
    try:
        find_annotations(_source(spec), _canonical(_source(spec), spec.default_split), data_root, spec.folder)
    except DatasetError:
        roots = candidate_roots(_source(spec), data_root, spec.folder)
        return f"no {_source(spec).full_json} or per-split JSON under {' or '.join(map(str, roots))}" if roots \
            else NO_ROOT
    return None


FORMAT = Format(name="karpathy", tasks=(TaskKind.RETRIEVAL,),
                load=lambda spec, request: load_source(_source(spec), request, spec), probe=probe,
                options={"variant": str})
