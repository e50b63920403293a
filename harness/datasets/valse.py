"""VALSE (Parcalabescu et al., ACL 2022): image, caption and one foil per item, in 11 pieces.

Layout under ``--data-root`` / ``VLBENCH_DATA`` (folder ``valse/``): ``data/<piece>.json`` (or
``<piece>.json``), each one object ``{"<id>": {"dataset", "original_split", "dataset_idx",
"linguistic_phenomena", "image_file", "caption", "classes", "classes_foil", "mturk": {"foil",
"caption", "other"}, "foil"}}``; images from the source datasets (field ``dataset``: Visual7W,
COCO, SWiG, VisDial, ...) in ``valse/images/<dataset>/<image_file>`` or ``valse/images/<image_file>``.

Only the **valid** items count, as the VALSE authors ask: at least two of the three annotators
chose the caption, not the foil (``mturk.caption >= 2``); the others are dropped and counted in
``info["not_validated"]``. ``acc_<piece>`` is pairwise accuracy (caption scored strictly above
the foil, VALSE's acc_r), ``acc`` the mean over the pieces loaded.
"""

from __future__ import annotations

from harness.metrics.selection import SelectionSpec

from .base import DatasetError, DatasetRequest, Format, TaskKind
from .compositional import (
    ImageFinder,
    entries,
    fields,
    find_file,
    image_folders,
    parts_for,
    probe_parts,
    read_json,
    report_bad,
)
from .fields import relative_path, text
from .selection import CaptionSelectionData, assemble_selection

NAME = "valse"
PARTS = ("existence", "plurals", "counting-hard", "counting-small-quant", "counting-adversarial", "relations",
         "action-replacement", "actant-swap", "coreference-standard", "coreference-hard", "foil-it")
MIN_VOTES = 2  # of 3 annotators chose the caption, not the foil: a validated item
KEYS = ("dataset", "image_file", "caption", "foil", "mturk")


def _file(spec, part: str, data_root: str | None):
    return find_file(spec, data_root, (f"data/{part}.json", f"{part}.json"), f"{part}.json")


def load(spec, request: DatasetRequest) -> CaptionSelectionData:
    info: dict = {"not_validated": 0}
    parts = parts_for(spec, request.split, PARTS)
    finder = ImageFinder(image_folders(spec.folder, request.data_root, ("images",)))
    items = []
    for part in parts:
        path = _file(spec, part, request.data_root)
        raw = read_json(path, info, request.strict)
        bad: list[str] = []
        for key, entry in entries(raw, path, dict, '{"<id>": {"dataset", "image_file", "caption", "foil", "mturk"}}'):
            got = fields(entry, KEYS, path, f"entry {key!r}", bad)
            if got is None:
                continue
            source, image, caption, foil, votes = got
            at = f"{path}: entry {key!r}"
            source, image = relative_path(source, f"{at}: dataset"), relative_path(image, f"{at}: image_file")
            caption, foil = text(caption, f"{at}: caption"), text(foil, f"{at}: foil")
            if not isinstance(votes, dict) or isinstance(votes.get("caption"), bool) \
                    or not isinstance(votes.get("caption"), int):
                raise DatasetError(f"{at}: mturk: expected an object with a whole-number 'caption' vote count, "
                                   f"got {votes!r}"[:300])
            if votes["caption"] < MIN_VOTES:
                info["not_validated"] += 1
                continue
            path_found = finder.find(f"{source}/{image}", f"{at}: image_file") or finder.find(image, f"{at}: image_file")
            items.append((((f"{source}/{image}", path_found),), (caption, foil), part, None))
        report_bad(NAME, path, bad, request.strict, info)
    return assemble_selection(NAME, request.split, items, SelectionSpec(PARTS), finder.where(),
                              "put each source dataset's images in valse/images/<dataset>/", (), info, request)


def probe(spec, data_root: str | None) -> str | None:
    return probe_parts(lambda part: _file(spec, part, data_root), PARTS)


FORMAT = Format(name=NAME, tasks=(TaskKind.CAPTION_SELECTION,), load=load, probe=probe)
