"""Reading one split of CLIP_benchmark's webdataset layout into samples (no image decoding).

The layout (CLIP_benchmark ``build_wds_dataset`` / ``clip_benchmark_export_wds``)::

    <root>/dataset_type.txt                      retrieval | multilabel | anything else: classification
    <root>/classnames.txt                        one class name a line (classification)
    <root>/zeroshot_classification_templates.txt one template a line, the class name as {c}
    <root>/<split>/nshards.txt                   n
    <root>/<split>/0.tar ... <n-1>.tar           samples: <key>.<webp|png|jpg|jpeg> (the first
                                                 present, in that order) + <key>.txt (captions,
                                                 one a line) | <key>.cls (an integer) | <key>.npy
                                                 (a 0/1 vector over the classes)

Samples are grouped by webdataset (its key/extension rules); each image member's offset in
the shard comes from the tar headers (``tarfile``), so images are read later by seek
(:class:`harness.datasets.wds_images.WdsImages`). Every fault names its shard and key: a
shard cut short (no end-of-archive blocks, or a member that ends early), a sample without an
image, an unparsable or out-of-range ``cls``, a malformed ``npy``.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DatasetError
from .wds_images import Member, WdsImages
from .wds_source import Location

IMAGE_EXTS = ("webp", "png", "jpg", "jpeg")  # CLIP_benchmark's order of preference
RETRIEVAL, CLASSIFICATION, MULTILABEL = "retrieval", "classification", "multilabel"
TAR_END = 1024  # a tar ends with two zero blocks of 512 bytes (POSIX)


@dataclass
class Split:
    """One split's samples, in shard then tar order."""

    images: WdsImages
    sample_ids: list[str]                       # "<split>/<n>.tar:<key>"
    captions: list[list[str]] = field(default_factory=list)   # retrieval
    labels: list[Any] = field(default_factory=list)           # int (classification) or 0/1 list (multilabel)
    counts: dict[str, int] = field(default_factory=dict)


def read_text(loc: Location, rel: str, optional: bool = False) -> str | None:
    path = loc.fetch(rel, optional=optional)
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{loc.where(rel)}: not UTF-8 text ({exc})") from None


def dataset_type(loc: Location) -> str:
    """CLIP_benchmark's rule: ``dataset_type.txt`` says retrieval or multilabel; absent or
    anything else is classification."""
    text = (read_text(loc, "dataset_type.txt", optional=True) or "").strip().lower()
    return text if text in (RETRIEVAL, MULTILABEL) else CLASSIFICATION


def lines(loc: Location, rel: str) -> list[str] | None:
    text = read_text(loc, rel, optional=True)
    return None if text is None else [ln.strip() for ln in text.splitlines() if ln.strip()]


def shard_count(loc: Location, split: str) -> int:
    rel = f"{split}/nshards.txt"
    text = read_text(loc, rel)
    try:
        n = int(text.strip())
    except ValueError:
        raise DatasetError(f"{loc.where(rel)}: should hold the number of shards, got {text.strip()[:40]!r}") from None
    if n < 1:
        raise DatasetError(f"{loc.where(rel)}: the number of shards must be at least 1, got {n}")
    return n


def _cut_short(path: Path) -> str | None:
    """Why the shard's end is not a tar's end (two zero blocks of 512 bytes), or None."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - TAR_END))
        tail = f.read()
    if size % 512 or len(tail) < TAR_END or tail.strip(b"\0"):
        return f"no end-of-archive blocks; {size} bytes"
    return None


def _check_end(path: Path, label: str, last_key: str | None, broken_key: str | None = None) -> None:
    why = _cut_short(path)
    if why is not None:
        after = (f" at key {broken_key}" if broken_key is not None else
                 f" after key {last_key}" if last_key is not None else "")
        raise DatasetError(f"{label}: shard cut short{after} ({why})", "fetch or write the shard again")


def _offsets(path: Path, label: str) -> dict[str, tuple[int, int]]:
    try:
        with tarfile.open(path, mode="r:") as tf:
            return {m.name: (m.offset_data, m.size) for m in tf.getmembers() if m.isreg()}
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"{label}: not a readable tar file ({exc})") from None


def _samples(path: Path, label: str):
    """webdataset's grouping of one shard's members into samples; faults name the last good key."""
    from webdataset.tariterators import group_by_keys, tar_file_expander

    last = None
    with open(path, "rb") as stream:
        try:
            for sample in group_by_keys(tar_file_expander([{"url": label, "stream": stream}])):
                last = sample["__key__"]
                yield sample
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            after = f" after key {last}" if last is not None else ""
            msg = str(exc.args[0]) if exc.args else type(exc).__name__
            raise DatasetError(f"{label}: shard cut short or corrupt{after} ({msg.split(' @ ')[0]})") from None


def _parse_label(sample: dict, kind: str, where: str) -> Any:
    if kind == CLASSIFICATION:
        raw = sample.get("cls")
        if raw is None:
            raise DatasetError(f"{where}: sample has no .cls label (a classification dataset)")
        try:
            return int(raw.decode("utf-8").strip())
        except (UnicodeDecodeError, ValueError):
            raise DatasetError(f"{where}: .cls is not an integer ({raw[:20]!r})") from None
    raw = sample.get("npy")
    if raw is None:
        raise DatasetError(f"{where}: sample has no .npy labels (a multilabel dataset)")
    import numpy as np

    try:
        y = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{where}: .npy is not a numpy array ({exc})") from None
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise DatasetError(f"{where}: .npy must be a 0/1 vector over the classes, got shape {y.shape}")
    return [int(v) for v in y]


def check_label(y: Any, kind: str, n_classes: int | None, where: str) -> None:
    """Against the class list (checked on every load: classnames.txt may change, shards not)."""
    if n_classes is None:
        return
    if kind == CLASSIFICATION and not 0 <= y < n_classes:
        raise DatasetError(f"{where}: .cls {y} is out of range: classnames.txt has {n_classes} classes "
                           f"(0..{n_classes - 1})")
    if kind == MULTILABEL and len(y) != n_classes:
        raise DatasetError(f"{where}: .npy must be a 0/1 vector of {n_classes} classes, got {len(y)} values")


def scan_shard(path: Path, label: str, kind: str) -> dict[str, Any]:
    """One shard listed: ``{"rows": [[key, image member, offset, size, sha256, target], ...],
    "empty_caption_lines": n}``; every fault names the shard and key."""
    found: list[list] = []
    current: list[str] = []  # the key being read
    empty = [0]
    try:
        _read_samples(path, label, kind, found, current, empty)
    except DatasetError:
        # a shard cut short shows first as a broken last sample: say what happened to the shard
        last = found[-1][0] if found else None
        _check_end(path, label, last, current[-1] if current and current[-1] != last else None)
        raise
    _check_end(path, label, found[-1][0] if found else None)
    offsets = {name.lower(): where for name, where in _offsets(path, label).items()}
    for row in found:
        row[2:4] = offsets[row[1].lower()]
    return {"rows": found, "empty_caption_lines": empty[0]}


def _read_samples(path: Path, label: str, kind: str, found: list, current: list, empty: list) -> None:
    for sample in _samples(path, label):
        key = sample["__key__"]
        current.append(key)
        where = f"{label}: key {key}"
        ext = next((e for e in IMAGE_EXTS if e in sample), None)
        if ext is None:
            has = ", ".join(sorted(k for k in sample if not k.startswith("__"))) or "nothing"
            raise DatasetError(f"{where}: sample has no image ({'/'.join(IMAGE_EXTS)}); it has: {has}")
        if kind == RETRIEVAL:
            raw = sample.get("txt")
            try:
                text = raw.decode("utf-8") if raw is not None else ""
            except UnicodeDecodeError as exc:
                raise DatasetError(f"{where}: .txt is not UTF-8 ({exc})") from None
            target = [c.strip() for c in text.splitlines() if c.strip()]
            empty[0] += len(text.splitlines()) - len(target)
        else:
            target = _parse_label(sample, kind, where)
        found.append([key, f"{key}.{ext}", 0, 0, hashlib.sha256(sample[ext]).hexdigest(), target])


def read_split(loc: Location, split: str, kind: str, n_classes: int | None = None,
               cache_dir: str | None = None) -> Split:
    """Every sample of ``split``: image members (offset, size, sha256) and their targets. A
    shard's listing is kept in the cache (:mod:`harness.datasets.wds_index`) while the shard
    file is unchanged, so only the first load reads the shards whole."""
    from .wds_index import shard_listing

    n = shard_count(loc, split)
    out = Split(WdsImages([], [], [], []), [], counts={"shards": n, "empty_caption_lines": 0})
    for s in range(n):
        rel = f"{split}/{s}.tar"
        path = loc.fetch(rel)
        listing = shard_listing(path, loc.where(rel), kind, cache_dir, scan_shard)
        out.images.shards.append(str(path))
        out.counts["empty_caption_lines"] += listing["empty_caption_lines"]
        for key, member, offset, size, sha, target in listing["rows"]:
            if kind == RETRIEVAL:
                out.captions.append(target)
            else:
                check_label(target, kind, n_classes, f"{loc.where(rel)}: key {key}")
                out.labels.append(target)
            out.images.members.append(Member(s, offset, size))
            out.images.names.append(f"{rel}:{member}")
            out.images.digests.append(sha)
            out.sample_ids.append(f"{rel}:{key}")
    if not out.sample_ids:
        raise DatasetError(f"{loc.where(split)}: the split's {n} shard(s) hold no samples")
    return out
