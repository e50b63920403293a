"""Multilingual retrieval sets in their published layouts; each language is a split (``--split de``),
so a model gets one record, and one row on the page, per language. ``info["language"]`` (and the
record's ``dataset.language``) names it as a BCP-47 code.

* **XM3600** (Crossmodal-3600, Thapliyal et al. 2022): ``captions.jsonl``, one JSON object a line,
  ``{"image/key": K, "image/locale": L, "<lang>": {"caption": [...], ...}, ...}`` for 36
  languages, and ``images/<K>.jpg`` (3,600 images). Option ``captions``: ``first`` (default: the
  first caption per image and language, as CLIP_benchmark and the NLLB-CLIP / M-CLIP numbers
  use it) or ``all``.
* **XTD10** (Aggarwal & Kale 2020; the adobe-research repository): ``test_image_names.txt`` (1,000
  COCO image names) and ``test_1kcaptions_<lang>.txt`` (line i captions image i) for 11
  languages, in ``XTD10/`` (de and fr in ``MIC/``, jp in ``STAIR/``, as released) or the root;
  images in ``images/``.

Missing and bad images follow the shared policy (:mod:`harness.datasets.assemble`); a malformed
line, or an image without a caption in the language, is skipped, counted and reported (an error
under ``--strict``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .assemble import assemble_retrieval, skip
from .base import (
    LOCAL_COPY_HINT,
    DatasetError,
    DatasetRequest,
    Format,
    RetrievalData,
    TaskKind,
    files_probe,
    find_in_roots,
)

XTD_DIRS = ("XTD10", "MIC", "STAIR", ".")
BCP47 = {"jp": "ja"}  # XTD10 names Japanese "jp"


def language_of(split: str) -> str:
    """The BCP-47 code of a language split.

    >>> language_of("jp"), language_of("de")
    ('ja', 'de')
    """
    return BCP47.get(split, split)


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from None


def _check(spec, request: DatasetRequest) -> str:
    if request.task is not TaskKind.RETRIEVAL:
        raise DatasetError(f"{spec.name} has only a retrieval view, not {request.task.value}")
    return request.split


def _finish(spec, request, root: Path, items, shas: dict, info: dict) -> RetrievalData:
    data = assemble_retrieval(spec.name, request.split, items, f"in {root / 'images'}",
                              LOCAL_COPY_HINT.format(folder=spec.folder), (shas, request.split),
                              {**info, "language": language_of(request.split), "sha256": shas}, request,
                              partial_ok=spec.splits[request.split].partial_ok)
    return data


# ------------------------------------------------------------------------ XM3600

def xm3600_captions(text: str, path: Path, lang: str, mode: str, strict: bool) -> list[tuple[str, list[str]]]:
    """(image key, captions in ``lang``) per line of captions.jsonl, in file order."""
    out, bad = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = row["image/key"]
            caps = row.get(lang, {}).get("caption", []) if isinstance(row.get(lang, {}), dict) else None
        except (ValueError, KeyError, TypeError, AttributeError):
            bad.append(n)
            continue
        if not isinstance(key, str) or caps is None or not all(isinstance(c, str) for c in caps):
            bad.append(n)
            continue
        caps = [c.strip() for c in caps if c.strip()]  # none: dropped by the shared policy, counted
        out.append((key, caps[:1] if mode == "first" else caps))
    if bad:
        skip(f"xm3600: {len(bad)} malformed line(s) skipped in {path}, line(s) {bad[:8]}", strict)
    return out


def load_xm3600(spec, request: DatasetRequest) -> RetrievalData:
    lang = _check(spec, request)
    mode = spec.options.get("captions", "first")
    if mode not in ("first", "all"):
        raise DatasetError(f"{spec.origin}: {spec.name}: options.captions must be 'first' or 'all', got {mode!r}")
    root, ann = find_in_roots(spec, request.data_root, ["captions.jsonl"], False, spec.name)
    blob = ann.read_bytes()
    rows = xm3600_captions(_text(ann), ann, lang, mode, request.strict)
    items = [(f"{key}.jpg", _image(root, f"{key}.jpg"), caps) for key, caps in rows]
    return _finish(spec, request, root, items, {ann.name: hashlib.sha256(blob).hexdigest()},
                   {"root": str(root), "captions_per_image": mode})


def _image(root: Path, name: str) -> Path | None:
    path = root / "images" / name
    return path if path.is_file() else None


# ------------------------------------------------------------------------ XTD10

def _xtd_file(root: Path, name: str) -> Path | None:
    return next((root / d / name for d in XTD_DIRS if (root / d / name).is_file()), None)


def load_xtd10(spec, request: DatasetRequest) -> RetrievalData:
    lang = _check(spec, request)
    root, names_path = find_in_roots(spec, request.data_root, [f"{d}/test_image_names.txt" for d in XTD_DIRS],
                                     False, spec.name, "test_image_names.txt")
    caps_name = f"test_1kcaptions_{lang}.txt"
    caps_path = _xtd_file(root, caps_name)
    if caps_path is None:
        raise DatasetError(f"{spec.name}/{lang}: {caps_name} not found in {root} (or its XTD10/, MIC/, STAIR/)",
                           LOCAL_COPY_HINT.format(folder=spec.folder))
    names = [ln.strip() for ln in _text(names_path).splitlines()]
    caps = [ln.strip() for ln in _text(caps_path).splitlines()]
    while names and not names[-1]:
        names.pop()
    while caps and not caps[-1]:
        caps.pop()
    if len(names) != len(caps):
        raise DatasetError(f"{spec.name}/{lang}: {caps_path} has {len(caps)} lines but {names_path} lists "
                           f"{len(names)} images; line i captions image i")
    items = [(n, _image(root, n), [c] if c else []) for n, c in zip(names, caps)]
    shas = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (names_path, caps_path)}
    return _finish(spec, request, root, items, shas, {"root": str(root)})


def _probe(names: list[str]):
    return files_probe(lambda spec: names)


XM3600 = Format(name="xm3600", tasks=(TaskKind.RETRIEVAL,), load=load_xm3600, probe=_probe(["captions.jsonl"]),
                options={"captions": str})
XTD10 = Format(name="xtd10", tasks=(TaskKind.RETRIEVAL,), load=load_xtd10,
               probe=_probe([f"{d}/test_image_names.txt" for d in XTD_DIRS]))
FORMATS = (XM3600, XTD10)
