"""What the file-based image + text -> label loaders share: reading JSON-lines files with
errors that name the file and line, decoding text files with a named fallback, and
:func:`assemble_pairs`, from listed rows to an :class:`ImageTextLabelData`.

Image files follow the policy of :mod:`harness.datasets.assemble`: a missing or unreadable
image fails an evaluation split (naming how many and which, by file and line of the
annotation), and is dropped with one warning and counted in ``train``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .assemble import _partial_ok, content_hash, skip, usable_files
from .base import LOCAL_COPY_HINT, DatasetError, DatasetRequest, fingerprint
from .images import ImageSet
from .pair_labels import ImageTextLabelData, limit_pairs


@dataclass(frozen=True)
class PairRow:
    """One listed item: ``origin`` is where it was read (``train.jsonl:12``), ``key`` its id
    in the source; ``image``/``right`` are None when the file named by ``*_ref`` is absent."""

    origin: str
    key: str
    image_ref: str
    image: Path | None
    text: str
    label: Any                 # class index, or sorted list of class indices (multi-label)
    right_ref: str | None = None
    right: Path | None = None
    group: str | None = None
    holdout: str | None = None  # the unit never split between a fitted and a held-out part


def read_jsonl(path: Path) -> tuple[list[tuple[int, dict]], str]:
    """(line number, object) per non-blank line and the file's sha256. A line that is not a
    JSON object fails, naming the file and the line; so does a file with no items."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    out = []
    for no, raw in enumerate(blob.removeprefix(b"\xef\xbb\xbf").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise DatasetError(f"{path}:{no}: not UTF-8 text") from None
        except ValueError as exc:
            raise DatasetError(f"{path}:{no}: not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise DatasetError(f"{path}:{no}: each line must be a JSON object, got {type(obj).__name__}")
        out.append((no, obj))
    if not out:
        raise DatasetError(f"{path}: empty split (no items)")
    return out, hashlib.sha256(blob).hexdigest()


def typed_field(obj: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]`` when present and of type ``kind`` (bool never counts as int), else a
    DatasetError naming ``where`` (file:line) and the field."""
    if key not in obj:
        raise DatasetError(f"{where}: missing field {key!r}")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise DatasetError(f"{where}: field {key!r} must be {names}, got {type(value).__name__} {value!r}")
    return value


def decode_text(blob: bytes, fallbacks: tuple[str, ...]) -> tuple[str, str]:
    """(text, encoding used): UTF-8 first (a BOM is dropped), then each named fallback in
    order. ``latin-1`` decodes any bytes, so a chain ending with it never fails.

    >>> decode_text("café".encode("cp1252"), ("cp1252", "latin-1"))
    ('café', 'cp1252')
    >>> decode_text(b"\\x81", ("cp1252", "latin-1"))
    ('\\x81', 'latin-1')
    """
    for encoding in ("utf-8-sig", *fallbacks):
        try:
            return blob.decode(encoding), ("utf-8" if encoding == "utf-8-sig" else encoding)
        except UnicodeDecodeError:
            continue
    raise UnicodeDecodeError("utf-8", blob, 0, len(blob), f"not {' or '.join(('utf-8', *fallbacks))}")


def inside(root: Path, ref: str, where: str) -> Path:
    """``root / ref`` for a relative path that stays inside ``root`` (no absolute paths, no
    ``..`` escaping it, symlinks resolved); else a DatasetError naming ``where`` and the path."""
    if not ref.strip():
        raise DatasetError(f"{where}: empty image path")
    rel = Path(ref)
    if rel.is_absolute() or rel.drive:
        raise DatasetError(f"{where}: image path {ref!r} must be relative to {root}")
    base = root.resolve()
    target = (base / rel).resolve()
    if target != base and base not in target.parents:
        raise DatasetError(f"{where}: image path {ref!r} leaves {root}; paths must stay inside the dataset folder")
    return root / rel


def found(path: Path) -> Path | None:
    return path if path.is_file() else None


def file_index(folder: Path) -> dict[str, Path]:
    """File name -> path for every file under ``folder`` (any depth), read once: layouts that
    spread images over numbered sub-folders are looked up by name."""
    if not folder.is_dir():
        return {}
    return {p.name: p for p in folder.rglob("*") if p.is_file()}


def _check_images(name: str, split: str, rows: list[PairRow], where: str, hint: str, partial_ok: bool,
                  strict: bool) -> tuple[list[bool], dict[str, Any]]:
    """Each distinct image file checked once (pairs reuse images); a row is kept when all its
    images are. Labels in messages are ``origin (image as written)``."""
    first: dict[tuple[str, Path | None], str] = {}
    for row in rows:
        for ref, path in ((row.image_ref, row.image), (row.right_ref, row.right)):
            if ref is not None:
                first.setdefault((ref, path), f"{row.origin} ({ref})")
    listed = [(label, path) for (_, path), label in first.items()]
    keep_files, counts = usable_files(name, split, listed, where, hint, partial_ok, strict)
    bad = {ref for ((ref, _), _), ok in zip(first.items(), keep_files) if not ok}
    keep = [row.image_ref not in bad and (row.right_ref is None or row.right_ref not in bad) for row in rows]
    return keep, counts


@dataclass(frozen=True)
class PairSource:
    """What a split's rows were read from: ``where`` the images were looked for (named when some
    are missing), the content ``hashes`` the rows depend on (into the fingerprint), the record's
    ``info``, and ``hint``, how to point at a copy (default: the dataset folder's)."""

    where: str
    hashes: tuple
    info: dict[str, Any]
    multilabel: bool = False
    hint: str | None = None


def assemble_pairs(spec, request: DatasetRequest, rows: list[PairRow], classnames: list[str],
                   source: PairSource) -> ImageTextLabelData:
    """Rows -> ImageTextLabelData under the shared image-file policy, fingerprinted by every
    item's key, text, label and image names, then ``--limit``."""
    name, split, where, multilabel = spec.name, request.split, source.where, source.multilabel
    hint = source.hint or LOCAL_COPY_HINT.format(folder=spec.folder)
    partial_ok = spec.splits[split].partial_ok if split in spec.splits else None
    if not rows:
        raise DatasetError(f"{name}/{split}: empty split (no items listed {where})")
    keep, counts = _check_images(name, split, rows, where, hint, _partial_ok(split, partial_ok), request.strict)
    kept = [row for row, k in zip(rows, keep) if k]
    empty = [row.origin for row in kept if not row.text.strip()]
    if empty:  # kept (a model sees the image alone), but said: it is rarely what the data meant
        warnings.warn(f"{name}/{split}: {len(empty)} item(s) have an empty text (e.g. {', '.join(empty[:3])}); "
                      "they are kept", stacklevel=3)
    pairs = any(row.right_ref is not None for row in kept)
    grouped = any(row.group is not None for row in kept)
    held_apart = any(row.holdout is not None for row in kept)
    digest = content_hash((row.key for row in kept),
                          ((row.label, f"{row.image_ref}\t{row.right_ref}\t{row.group}\t{row.text}") for row in kept))
    data = ImageTextLabelData(
        name=name, split=split, images=ImageSet([row.image for row in kept]), texts=[row.text for row in kept],
        labels=[row.label for row in kept], classnames=list(classnames), multilabel=multilabel,
        fingerprint=fingerprint(name, split, *source.hashes, digest, classnames),
        images_right=ImageSet([row.right for row in kept]) if pairs else None,
        groups=[row.group for row in kept] if grouped else None, origins=[row.origin for row in kept],
        holdout_groups=[row.holdout or row.key for row in kept] if held_apart else None,
        info={**source.info, **counts, "empty_texts": len(empty)})
    return limit_pairs(data, request.limit, request.seed)


def report_skips(name: str, origins: list[str], what: str, strict: bool) -> None:
    """One warning (an error under ``--strict``) for rows skipped for one reason."""
    if origins:
        shown = ", ".join(origins[:5]) + (", ..." if len(origins) > 5 else "")
        skip(f"{name}: {len(origins)} {what} ({shown})", strict, stacklevel=4)
