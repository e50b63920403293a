"""Image classification from a CSV of (file, label) rows plus a class-names file, local copy.

Layout (names from the manifest's ``options``, defaults shown)::

    <root>/{split}.csv          file,label    (a header row naming file/label is optional)
    <root>/classnames.txt       one class name per line; line i is label i  (classes.names)
    <root>/<image_dir>/<file>   image_dir defaults to the root itself

A label is a class index or a class name. Rows are read in order; skipped, counted in
``info`` and reported in one warning per kind naming the CSV file and its line numbers
(errors under ``--strict``): malformed rows, labels that are no class, non-UTF-8 rows, and
repeated files (first kept; the warning says when the labels disagree). Image files follow
:mod:`harness.datasets.assemble`.
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Any

from .assemble import assemble_classification, skip
from .base import (
    LOCAL_COPY_HINT,
    ClassificationData,
    DatasetError,
    DatasetRequest,
    Format,
    TaskKind,
    find_in_roots,
)
from .fields import relative_path
from .resources import resolve_classnames, templates

HINT = LOCAL_COPY_HINT
_FILE_HEADERS = {"file", "filename", "image", "path", "filepath"}
_LABEL_HEADERS = {"label", "class", "target", "classname"}


def csv_name(spec, split: str) -> str:
    s = spec.splits.get(split)
    return spec.options.get("file", "{split}.csv").format(split=(s.source_split if s and s.source_split else split))


def find_csv(spec, split: str, data_root: str | None) -> tuple[Path, Path]:
    return find_in_roots(spec, data_root, [csv_name(spec, split)], False, f"{spec.name}/{split}")


def _lines(nums: list[int]) -> str:
    return ", ".join(map(str, nums[:8])) + (" ..." if len(nums) > 8 else "")


def read_rows(blob: bytes, path: Path, classnames: list[str], name: str,
              strict: bool) -> tuple[list[tuple[int, str, int]], dict[str, Any]]:
    """(line number, file, class index) per usable row, and counts of skipped rows."""
    index = {c: i for i, c in enumerate(classnames)}
    bad: dict[str, list[int]] = {"malformed": [], "label": [], "encoding": [], "duplicate": []}
    conflicts: list[str] = []
    rows: list[tuple[int, str, int]] = []
    first: dict[str, int] = {}
    for no, raw in enumerate(blob.removeprefix(b"\xef\xbb\xbf").splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad["encoding"].append(no)
            continue
        if not line.strip():
            continue
        cells = [c.strip() for c in next(csv.reader(io.StringIO(line)), [])]
        if no == 1 and len(cells) == 2 and cells[0].lower() in _FILE_HEADERS and cells[1].lower() in _LABEL_HEADERS:
            continue
        if len(cells) != 2 or not cells[0] or not cells[1]:
            bad["malformed"].append(no)
            continue
        file, label = cells
        y = int(label) if label.isdigit() and int(label) < len(classnames) else index.get(label)
        if y is None:
            bad["label"].append(no)
            continue
        if file in first:
            bad["duplicate"].append(no)
            if first[file] != y:
                conflicts.append(file)
            continue
        first[file] = y
        rows.append((no, file, y))
    what = {"malformed": "malformed row(s) (need file,label)", "label": "row(s) whose label is no class",
            "encoding": "row(s) with non-UTF-8 bytes",
            "duplicate": "repeated file(s), first row kept" + (f"; labels disagree for {', '.join(conflicts[:3])}"
                                                              if conflicts else "")}
    for kind, nums in bad.items():
        if nums:
            skip(f"{name}: {len(nums)} {what[kind]} skipped in {path}, line(s) {_lines(nums)}", strict)
    counts = {"dropped_malformed_rows": len(bad["malformed"]), "dropped_unknown_labels": len(bad["label"]),
              "dropped_non_utf8_rows": len(bad["encoding"]), "dropped_duplicate_rows": len(bad["duplicate"]),
              "conflicting_duplicate_labels": len(conflicts)}
    return rows, counts


def load(spec, request: DatasetRequest) -> ClassificationData:
    if request.task is not TaskKind.ZEROSHOT:
        raise DatasetError(f"{spec.name} has only a zeroshot (classification) view")
    root, path = find_csv(spec, request.split, request.data_root)
    names = resolve_classnames(spec, root)
    blob = path.read_bytes()
    rows, counts = read_rows(blob, path, names, spec.name, request.strict)
    image_dir = root / spec.options.get("image_dir", ".")
    listings: dict[Path, set[str]] = {}

    def find(file: str, line: int) -> Path | None:
        p = image_dir / relative_path(file, f"{path}: line {line}: file")
        if p.parent not in listings:
            listings[p.parent] = {q.name for q in p.parent.iterdir()} if p.parent.is_dir() else set()
        return p if p.name in listings[p.parent] else None

    items = [(file, find(file, no), y) for no, file, y in rows]
    sha = hashlib.sha256(blob).hexdigest()
    info = {"root": str(root), "csv": str(path), "sha256": {path.name: sha}, **counts}
    return assemble_classification(spec.name, request.split, items, names, templates(spec.classes["templates"]),
                                   f"in {image_dir}", HINT.format(folder=spec.folder), (sha,), info, request,
                                   partial_ok=spec.splits[request.split].partial_ok)


def probe(spec, data_root: str | None) -> str | None:
    try:
        root, _ = find_csv(spec, spec.default_split, data_root)
    except DatasetError as exc:
        return exc.reason
    names = spec.classes.get("names", "")
    if not (root / names).is_file() and names != "folders":
        from .resources import classnames

        if classnames(names) is None:
            return f"class-names file {root / names} not found"
    return None


FORMAT = Format(name="csv", tasks=(TaskKind.ZEROSHOT,), load=load, probe=probe,
                options={"file": str, "image_dir": str}, needs_classes=True)
