"""Winoground (Thrush et al., CVPR 2022): 400 groups of 2 images x 2 captions, one ``test`` split.

Where the rows come from, first match wins (under ``--data-root`` / ``VLBENCH_DATA``, folder
``winoground/``):

1. the release files: ``data/examples.jsonl`` (or ``examples.jsonl``), one JSON object a line
   ``{"id", "caption_0", "caption_1", "image_0": "ex_0_img_0", "image_1", "tag",
   "secondary_tag", "num_main_preds", "collapsed_tag"}``, images ``data/images/<image_k>.png``
   (``images.zip`` unpacked);
2. ``facebook/winoground`` through ``datasets``: a ``save_to_disk`` copy in ``winoground/``, or
   the local Hugging Face cache (a gated dataset: fetch it once with a token on a machine with
   network), see :mod:`harness.datasets.hf`; images in the ``image_0`` / ``image_1`` columns.

Reports ``text_score``, ``image_score`` and ``group_score`` (Thrush et al. 2022); the main metric
is ``group_score``. Each group's ``collapsed_tag`` (Object / Relation / Both) is kept as its category.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.metrics.selection import SelectionSpec

from .base import DatasetError, DatasetNotFound, DatasetRequest, Format, TaskKind, fingerprint
from .compositional import ImageFinder, fields, find_file, image_folders, report_bad, report_repeated
from .fields import relative_path, text
from .images import HFImages
from .selection import CaptionItem, CaptionSelectionData, assemble_selection, limit_items

NAME = "winoground"
SPEC = SelectionSpec(("winoground",))
KEYS = ("caption_0", "caption_1", "image_0", "image_1")
EXTENSIONS = (".png", ".jpg", ".jpeg")


def _jsonl(spec, request: DatasetRequest) -> CaptionSelectionData:
    path = find_file(spec, request.data_root, ("data/examples.jsonl", "examples.jsonl"), "examples.jsonl")
    finder = ImageFinder([path.parent / "images", *image_folders(spec.folder, request.data_root, ("data/images", "images"))])
    info: dict = {"origin": str(path)}
    items, bad, repeated, seen = [], [], [], {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read it ({exc})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        got = fields(entry, KEYS, path, f"line {n}", bad)
        if got is None:
            continue
        at = f"{path}: line {n}"
        cap0, cap1 = (text(c, f"{at}: {k}") for c, k in zip(got[:2], KEYS[:2]))
        tag = entry.get("collapsed_tag")
        if tag is not None and not isinstance(tag, str):
            text(tag, f"{at}: collapsed_tag")  # names the field and the wrong type
        img0, img1 = got[2:]
        identity = json.dumps(entry.get("id"), default=str) if entry.get("id") is not None else json.dumps(got)
        if identity in seen:  # a repeated group would count twice in every score: the first is kept
            repeated.append(f"line {n} (as line {seen[identity]})")
            continue
        seen[identity] = n
        refs = tuple((name, _find(finder, name, f"{at}: {field}")) for field, name in zip(KEYS[2:], (img0, img1)))
        items.append((refs, (cap0, cap1), NAME, tag or None))
    report_bad(NAME, path, bad, request.strict, info)
    report_repeated(NAME, path, repeated, "group", request.strict, info)
    return assemble_selection(NAME, request.split, items, SPEC, finder.where(),
                              f"unzip Winoground's images.zip next to {path.name} (data/images/)", (), info, request)


def _find(finder: ImageFinder, name: str, where: str) -> Path | None:
    """The image file of an ``image_k`` name (the release names them without an extension)."""
    name = relative_path(name, where)
    names = [name] if name.lower().endswith(EXTENSIONS) else [name + ext for ext in EXTENSIONS]
    return next((p for p in (finder.find(n, where) for n in names) if p is not None), None)


@dataclass
class HFCells:
    """Images held in cells (row, column) of a ``datasets.Dataset`` (Winoground's two image columns)."""

    table: Any
    cells: list[tuple[int, str]]
    origin: str

    @property
    def paths(self) -> list[Path]:
        return [Path(self.key(i)) for i in range(len(self))]

    def __len__(self) -> int:
        return len(self.cells)

    def load(self, index: int):
        row, col = self.cells[index]  # one cell through HFImages: the same decode and error policy
        return HFImages(self.table, col, [row], f"{self.origin}/{col}").load(0)

    def key(self, index: int) -> str:
        row, col = self.cells[index]
        return f"{self.origin}/{col}#{row}"

    def subset(self, keep: Sequence[int]) -> HFCells:
        return HFCells(self.table, [self.cells[i] for i in keep], self.origin)


def _hub(spec, request: DatasetRequest) -> CaptionSelectionData:
    from .hf import open_table

    table, origin = open_table(spec, request.split, request.data_root)
    missing = [c for c in (*KEYS, "id") if c not in table.column_names]
    if missing:
        raise DatasetError(f"{NAME}: {origin} has no column(s) {missing}; columns: {table.column_names}")
    caps0, caps1 = table["caption_0"], table["caption_1"]
    tags = table["collapsed_tag"] if "collapsed_tag" in table.column_names else [None] * len(caps0)
    cells, items = [], []
    for row, (c0, c1, tag) in enumerate(zip(caps0, caps1, tags)):
        cells += [(row, "image_0"), (row, "image_1")]
        items.append(CaptionItem((2 * row, 2 * row + 1), (c0, c1), NAME, tag or None))
    src = spec.source
    data = CaptionSelectionData(NAME, request.split, HFCells(table, cells, origin), items, SPEC,
                                fingerprint(NAME, request.split, src["id"], src["revision"], caps0, caps1),
                                {"origin": origin, "hf_id": src["id"], "hf_revision": src["revision"],
                                 "items": len(items)})
    return limit_items(data, request.limit, request.seed)


def load(spec, request: DatasetRequest) -> CaptionSelectionData:
    try:
        return _jsonl(spec, request)
    except DatasetNotFound as files_missing:
        try:
            return _hub(spec, request)
        except DatasetError as exc:
            raise DatasetNotFound(f"{files_missing.reason}; and {exc.reason}", files_missing.hint) from None


def probe(spec, data_root: str | None) -> str | None:
    from .hf import local_copy

    try:
        find_file(spec, data_root, ("data/examples.jsonl", "examples.jsonl"), "examples.jsonl")
    except DatasetError as exc:
        return None if local_copy(spec, data_root) is not None else exc.reason
    return None


FORMAT = Format(name=NAME, tasks=(TaskKind.CAPTION_SELECTION,), load=load, probe=probe)
