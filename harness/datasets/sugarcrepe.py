"""SugarCrepe (Hsieh et al., NeurIPS 2023 Datasets & Benchmarks): 7 JSON files over COCO val2017.

Layout under ``--data-root`` / ``VLBENCH_DATA``: ``sugarcrepe/<part>.json`` (or
``sugarcrepe/data/<part>.json``, the repository's layout) for the parts ``add_att add_obj
replace_att replace_obj replace_rel swap_att swap_obj``; images in ``coco/val2017/`` (or
``sugarcrepe/val2017/``). Each file is one object ``{"<id>": {"filename": "000000xxxxxx.jpg",
"caption": true caption, "negative_caption": foil}}``. 7,511 items in all (692 + 2,062 + 788 +
1,652 + 1,406 + 666 + 245). ``acc`` is the mean of the 7 parts.
"""

from __future__ import annotations

from harness.metrics.selection import SelectionSpec

from .base import DatasetRequest, Format, TaskKind
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
from .fields import text
from .selection import CaptionSelectionData, assemble_selection

NAME = "sugarcrepe"
PARTS = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")
SPEC = SelectionSpec(PARTS)
IMAGES_HINT = "put COCO val2017 images in coco/val2017/ under --data-root (or VLBENCH_DATA)"


def _file(spec, part: str, data_root: str | None):
    return find_file(spec, data_root, (f"{part}.json", f"data/{part}.json"), f"{part}.json")


def load(spec, request: DatasetRequest) -> CaptionSelectionData:
    info: dict = {}
    finder = ImageFinder(image_folders(spec.options.get("images_folder", "coco"), request.data_root, ("val2017",))
                         + image_folders(spec.folder, request.data_root, ("val2017", "images")))
    items = []
    for part in parts_for(spec, request.split, PARTS):
        path = _file(spec, part, request.data_root)
        raw = read_json(path, info, request.strict)
        bad: list[str] = []
        for key, entry in entries(raw, path, dict, '{"<id>": {"filename", "caption", "negative_caption"}}'):
            got = fields(entry, ("filename", "caption", "negative_caption"), path, f"entry {key!r}", bad)
            if got is not None:
                at = f"{path}: entry {key!r}"
                filename, caption, foil = got
                caption, foil = text(caption, f"{at}: caption"), text(foil, f"{at}: negative_caption")
                image = finder.find(filename, f"{at}: filename")
                items.append((((filename, image),), (caption, foil), part, None))
        report_bad(NAME, path, bad, request.strict, info)
    return assemble_selection(NAME, request.split, items, SPEC, finder.where(), IMAGES_HINT, (), info, request)


def probe(spec, data_root: str | None) -> str | None:
    return probe_parts(lambda part: _file(spec, part, data_root), PARTS)


FORMAT = Format(name=NAME, tasks=(TaskKind.CAPTION_SELECTION,), load=load, probe=probe,
                options={"images_folder": str})
