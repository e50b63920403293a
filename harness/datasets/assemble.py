"""The policy every file-based loader shares, from listed items to a RetrievalData /
ClassificationData: missing and bad image files, captionless images, ``--strict``,
``--limit`` and a content fingerprint.

Missing or bad (empty, truncated, not an image) files: an evaluation split must be
complete, or its scores stop being comparable with published ones, so the load fails,
naming how many and which; a split that may be partial (``train`` by default; a manifest
split can say ``partial_ok``) drops them with one warning and counts them in ``info``.
``--strict`` fails on every drop.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .base import (
    ClassificationData,
    DatasetError,
    DatasetRequest,
    RetrievalData,
    apply_limit,
    fingerprint,
)
from .images import ImageSet, file_problem

# Splits that may load with images missing (dropped and counted); evaluation splits must be complete.
PARTIAL_OK_SPLITS = frozenset({"train"})
STRICT_NOTE = " (--strict: every skip is an error)"


def skip(message: str, strict: bool, stacklevel: int = 3) -> None:
    """Report a skipped item: a warning normally, a :class:`DatasetError` under ``--strict``."""
    if strict:
        raise DatasetError(message + STRICT_NOTE)
    warnings.warn(message, stacklevel=stacklevel)


def _examples(names: Iterable[str], n: int = 3) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def content_hash(keys: Iterable[str], rows: Iterable[tuple[Any, Any]] = ()) -> str:
    """sha256 over item keys and (target, text) rows: changes whenever the selection does."""
    h = hashlib.sha256()
    for k in keys:
        h.update(k.encode("utf-8", "replace") + b"\0")
    h.update(b"\1")
    for target, text in rows:
        h.update(f"{target}\t{text}\n".encode("utf-8", "replace"))
    return h.hexdigest()


def usable_files(name: str, split: str, items: list[tuple[str, Path | None]], where: str, hint: str,
                 partial_ok: bool, strict: bool) -> tuple[list[bool], dict[str, Any]]:
    """Which ``(label, path or None)`` items have a readable image file, under the policy above.
    Returns a keep mask and the counts for ``info``."""
    missing = [label for label, path in items if path is None]
    bad = [(label, why) for label, path in items if path is not None and (why := file_problem(path))]
    counts: dict[str, Any] = {"dropped_missing_images": len(missing), "dropped_bad_images": len(bad)}
    if bad:
        counts["bad_images"] = [f"{label}: {why}" for label, why in bad[:20]]
    if not (missing or bad):
        return [True] * len(items), counts
    parts = []
    if missing:
        parts.append(f"{len(missing)} of {len(items)} images are missing {where} (e.g. {_examples(missing)})")
    if bad:
        parts.append(f"{len(bad)} image file(s) are unreadable ({_examples(f'{n}: {w}' for n, w in bad)})")
    msg = f"{name}/{split}: " + "; ".join(parts)
    if not partial_ok:
        raise DatasetError(f"{msg}; the {split} split must be complete to give comparable scores. {_fix(missing, hint)}")
    if len(missing) + len(bad) == len(items):
        raise DatasetError(f"{msg}; nothing left to load. {_fix(missing, hint)}")
    skip(f"{msg}; they are dropped", strict, stacklevel=4)
    dropped = set(missing) | {label for label, _ in bad}
    return [label not in dropped for label, _ in items], counts


def refuse_nul_captions(name: str, split: str, captions_of: Iterable[tuple[str, list[str]]],
                        info: dict[str, Any]) -> None:
    """A caption holding a NUL byte means a corrupt or binary annotation file: an error naming
    the image and the caption (and the file, where ``info`` has it), with or without --strict."""
    for label, caps in captions_of:
        for k, caption in enumerate(caps):
            if "\x00" in caption:
                source = info.get("annotation_file") or info.get("csv") or info.get("origin")
                raise DatasetError(f"{name}/{split}: {f'{source}: ' if source else ''}image {label}: caption {k} "
                                   f"holds a NUL byte ({caption[:60]!r}); the annotation file is corrupt or not text")


def _fix(missing: list[str], hint: str) -> str:
    return f"Put the images there, or {hint}" if missing else "Replace the unreadable files"


def _partial_ok(split: str, partial_ok: bool | None) -> bool:
    return split in PARTIAL_OK_SPLITS if partial_ok is None else partial_ok


def assemble_retrieval(name: str, split: str, images: list[tuple[str, Path | None, list[str]]], where: str,
                       hint: str, fingerprint_parts: tuple, info: dict[str, Any],
                       request: DatasetRequest, partial_ok: bool | None = None) -> RetrievalData:
    """``(label, path or None, captions)`` per listed image -> RetrievalData. Images without
    captions are dropped with a warning (an error under ``--strict``)."""
    refuse_nul_captions(name, split, ((label, caps) for label, _, caps in images), info)
    keep, counts = usable_files(name, split, [(label, path) for label, path, _ in images], where, hint,
                                _partial_ok(split, partial_ok), request.strict)
    kept = [(label, path, caps) for (label, path, caps), k in zip(images, keep) if k]
    no_caps = [label for label, _, caps in kept if not caps]
    if no_caps:
        skip(f"{name}/{split}: {len(no_caps)} image(s) have no caption and are dropped "
             f"(e.g. {_examples(no_caps)})", request.strict)
        kept = [item for item in kept if item[2]]
    pairs = [(cap, i) for i, (_, _, caps) in enumerate(kept) for cap in caps]
    digest = content_hash((label for label, _, _ in kept), ((i, c) for c, i in pairs))
    data = RetrievalData(
        name=name, split=split, images=ImageSet([path for _, path, _ in kept]),
        captions=[c for c, _ in pairs], caption_to_image=[i for _, i in pairs],
        fingerprint=fingerprint(name, split, *fingerprint_parts, digest),
        info={**info, **counts, "dropped_images_without_captions": len(no_caps)})
    return apply_limit(data, request.limit, request.seed)


def assemble_classification(name: str, split: str, items: list[tuple[str, Path | None, int]],
                            classnames: list[str], templates: list[str], where: str, hint: str,
                            fingerprint_parts: tuple, info: dict[str, Any], request: DatasetRequest,
                            partial_ok: bool | None = None) -> ClassificationData:
    """``(label, path or None, class index)`` per listed image -> ClassificationData."""
    if not items:
        raise DatasetError(f"{name}/{split}: no images listed {where}")
    keep, counts = usable_files(name, split, [(label, path) for label, path, _ in items], where, hint,
                                _partial_ok(split, partial_ok), request.strict)
    kept = [item for item, k in zip(items, keep) if k]
    digest = content_hash((label for label, _, _ in kept), ((y, classnames[y]) for _, _, y in kept))
    data = ClassificationData(
        name=name, split=split, images=ImageSet([path for _, path, _ in kept]),
        labels=[y for _, _, y in kept], classnames=list(classnames), templates=list(templates),
        fingerprint=fingerprint(name, split, *fingerprint_parts, digest, templates), info={**info, **counts})
    return apply_limit(data, request.limit, request.seed)
