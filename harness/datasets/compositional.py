"""What the compositional caption-selection loaders (SugarCrepe, ARO, Winoground, VALSE) share:
reading their annotation files, finding image files, cropped images, and which of a release's
parts a split asks for."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .assemble import skip
from .base import LOCAL_COPY_HINT, NO_ROOT, DatasetError, DatasetNotFound, data_roots
from .fields import relative_path
from .images import load_rgb

ALL = "test"  # the split holding every part of a release; each part is also a split of its own


def parts_for(spec, split: str, parts: Sequence[str]) -> tuple[str, ...]:
    """The release parts a split loads: all of them for ``test``, else the one it names."""
    if split == ALL:
        return tuple(parts)
    if split not in parts:
        raise DatasetError(f"{spec.name}: no split {split!r}; splits: {ALL}, {', '.join(parts)}")
    return (split,)


def probe_parts(find, parts: Sequence[str]) -> str | None:
    """Why a release cannot be loaded here (the first part whose file ``find(part)`` misses), or None."""
    try:
        for part in parts:
            find(part)
    except DatasetError as exc:
        return exc.reason
    return None


def find_file(spec, data_root: str | None, names: Sequence[str], what: str, note: str = "") -> Path:
    """The first of ``names`` (relative paths) under ``<root>/<folder>`` or ``<root>``; else a
    DatasetNotFound naming every place looked at (and ``note``) and how to point at a copy."""
    looked = []
    for root in data_roots(spec.folder, data_root):
        for name in names:
            looked.append(root / name)
            if looked[-1].is_file():
                return looked[-1]
    raise DatasetNotFound(f"{spec.name}: {what} not found ({', '.join(map(str, looked)) or NO_ROOT})"
                          + (f"; {note}" if note else ""),
                          LOCAL_COPY_HINT.format(folder=spec.folder))


def read_json(path: Path, info: dict, strict: bool = False) -> Any:
    """The parsed file; its sha256 goes into ``info["sha256"]`` (the manifest can pin it).
    A key repeated in an object keeps its FIRST value (Python's json keeps the last, silently),
    with one warning naming the keys, counted in ``info`` (an error under ``--strict``)."""
    repeated: list[str] = []

    def first_wins(pairs):
        out: dict = {}
        for key, value in pairs:
            if key in out:
                repeated.append(repr(key))
            else:
                out[key] = value
        return out

    try:
        blob = path.read_bytes()
        data = json.loads(blob, object_pairs_hook=first_wins)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read it as JSON ({exc})") from None
    info.setdefault("sha256", {})[path.name] = hashlib.sha256(blob).hexdigest()
    report_repeated(None, path, repeated, "key", strict, info)
    return data


def report_repeated(name: str | None, path: Path, repeated: list[str], what: str, strict: bool, info: dict) -> None:
    """One warning naming the file and the repeated entries, which were skipped (the first
    kept), counted in ``info["dropped_repeated_entries"]``; an error under ``--strict``."""
    if repeated:
        info["dropped_repeated_entries"] = info.get("dropped_repeated_entries", 0) + len(repeated)
        shown = ", ".join(repeated[:5]) + (", ..." if len(repeated) > 5 else "")
        skip(f"{name + ': ' if name else ''}{path}: {len(repeated)} repeated {what}{'' if len(repeated) == 1 else 's'} skipped, "
             f"the first kept ({shown})", strict)


def entries(raw: Any, path: Path, shape: type, example: str) -> list[tuple[Any, Any]]:
    """``(key, entry)`` pairs of a part file that must be a non-empty ``shape`` (dict: keyed
    entries; list: numbered ones). Any other shape is an error naming the file: a part that
    silently contributes nothing would change ``acc`` (the mean over parts) unnoticed."""
    if not isinstance(raw, shape):
        got = "null" if raw is None else type(raw).__name__
        raise DatasetError(f"{path}: expected a JSON {'object' if shape is dict else 'list'} of entries "
                           f"({example}), got {got}{'' if isinstance(raw, (dict, list)) else f' {raw!r}'[:80]}")
    if not raw:
        raise DatasetError(f"{path}: holds no entries; a part of the release cannot be empty (re-download it)")
    return list(raw.items()) if isinstance(raw, dict) else list(enumerate(raw))


def fields(entry: Any, keys: Sequence[str], path: Path, where: str, bad: list[str]) -> list | None:
    """``[entry[k] for k in keys]`` when entry is an object holding them all as non-empty values,
    else None, with ``where`` added to ``bad`` (skipped and counted by :func:`report_bad`)."""
    if isinstance(entry, dict) and all(entry.get(k) not in (None, "") for k in keys):
        return [entry[k] for k in keys]
    bad.append(where)
    return None


def report_bad(name: str, path: Path, bad: list[str], strict: bool, info: dict) -> None:
    """One warning naming the file and the skipped entries (an error under ``--strict``)."""
    if bad:
        info["dropped_bad_entries"] = info.get("dropped_bad_entries", 0) + len(bad)
        shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
        skip(f"{name}: {path}: {len(bad)} malformed entr{'y' if len(bad) == 1 else 'ies'} skipped ({shown})", strict)


class ImageFinder:
    """Finds a relative image path under several folders, listing each directory once."""

    def __init__(self, folders: Sequence[Path]):
        self.folders = [f for f in folders if f.is_dir()]
        self.looked = list(folders)
        self._listing: dict[Path, set[str]] = {}

    def find(self, rel: str, where: str) -> Path | None:
        """``rel`` (read at ``where``: file, entry, field) under the first folder holding it;
        a path that would leave the folders is refused (:func:`relative_path`)."""
        rel = relative_path(rel, where)
        for folder in self.folders:
            p = folder / rel
            if p.parent not in self._listing:
                self._listing[p.parent] = {q.name for q in p.parent.iterdir()} if p.parent.is_dir() else set()
            if p.name in self._listing[p.parent]:
                return p
        return None

    def where(self) -> str:
        return f"(looked in {', '.join(map(str, self.looked)) or NO_ROOT})"


def image_folders(folder: str, data_root: str | None, subdirs: Sequence[str]) -> list[Path]:
    """``<root>/<folder>/<subdir>`` then ``<root>/<subdir>`` for each subdir (``""``: the folder)."""
    return [r / s if s else r for s in subdirs for r in data_roots(folder, data_root)]


@dataclass
class CroppedImages:
    """Image files, each cropped to its box ``(x, y, w, h)`` when loaded (ARO's VG sets keep only
    the region of the relation or attribute); one entry per (file, box)."""

    paths: list[Path]
    boxes: list[tuple[float, float, float, float] | None]

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int):
        im = load_rgb(self.paths[index])
        box = self.boxes[index]
        if box is None:
            return im
        x, y, w, h = box
        return im.crop((x, y, x + w, y + h))

    def key(self, index: int) -> str:
        return f"{self.paths[index].name}#{self.boxes[index]}"

    def subset(self, keep: Sequence[int]) -> CroppedImages:
        return CroppedImages([self.paths[i] for i in keep], [self.boxes[i] for i in keep])
