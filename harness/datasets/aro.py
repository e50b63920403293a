"""ARO (Yuksekgonul et al., ICLR 2023, "When and why vision-language models behave like bags-of-words").

Layout under ``--data-root`` / ``VLBENCH_DATA`` (folder ``aro/``):

* ``visual_genome_relation.json`` (23,937 items) and ``visual_genome_attribution.json`` (28,748):
  lists of ``{"image_id", "image_path", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "true_caption",
  "false_caption", "relation_name"}`` (Attribution: ``"attributes": [a1, a2]`` instead of the
  relation); images in ``aro/images/<image_path>`` (the release's ``vgr_vga_images.zip``), each
  cropped to its box when loaded, as ARO does.
* ``coco_order.json`` (25,010 items) and ``flickr30k_order.json`` (5,000): **not published as
  files**. ARO builds them at load time from the Karpathy test captions (``coco_karpathy_test.json``,
  ``flickr30k_test.json`` of BLIP/LAVIS), each caption with 4 foils made by spaCy-tagged shuffles
  (nouns and adjectives; all but nouns and adjectives; within trigrams; of trigrams), every
  option cleaned by BLIP's ``pre_caption`` (30 words). To run them, dump ARO's
  ``COCO_Order(...).test_cases`` / ``Flickr30k_Order(...).test_cases`` as JSON: a list of
  ``{"image": "val2014/COCO_val2014_....jpg", "caption_options": [true, foil, foil, foil, foil]}``;
  images are looked up under ``coco/`` (resp. ``flickr30k/``) and ``aro/``. The shuffles are
  random, so say which dump you used. ``--split vg_relation`` (or ``vg_attribution``) runs
  without them.

Metrics (pinned, peers differ): ``acc_vg_relation_macro`` is the ARO paper's number, the mean of
per-relation accuracies over the relations not in ARO's excluded list (``EXCLUDED_RELATIONS``,
from the ARO repository's evaluation); ``acc_vg_relation_micro`` the plain share of items (the
51.8 some harnesses report for CLIP ViT-B/32); ``acc_vg_attribution_macro`` averages attribute
pairs with >= 25 items, as ARO does, ``_micro`` all items. ``acc_vg_*`` are the macro ones and
``acc`` the mean of the four sets. A tie is wrong everywhere (ARO's argmax gives ties on the
Order sets to the true caption, listed first).
"""

from __future__ import annotations

from harness.metrics.selection import CategoryMacro, SelectionSpec

from .base import DatasetError, DatasetRequest, Format, TaskKind
from .compositional import (
    CroppedImages,
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
from .fields import number, text, texts
from .resources import resource
from .selection import CaptionSelectionData, assemble_selection

NAME = "aro"
PARTS = ("vg_relation", "vg_attribution", "coco_order", "flickr_order")
FILES = {"vg_relation": "visual_genome_relation.json", "vg_attribution": "visual_genome_attribution.json",
         "coco_order": "coco_order.json", "flickr_order": "flickr30k_order.json"}
ORDER_IMAGES = {"coco_order": "coco", "flickr_order": "flickr30k"}
ATTRIBUTION_MIN_ITEMS = 25


def excluded_relations() -> tuple[str, ...]:
    return tuple(resource("aro_excluded_relations")["relations"])


def selection_spec() -> SelectionSpec:
    return SelectionSpec(PARTS, category_macro={
        "vg_relation": CategoryMacro(exclude=excluded_relations()),
        "vg_attribution": CategoryMacro(min_count=ATTRIBUTION_MIN_ITEMS)})


def _vg_items(part: str, path, raw, finder: ImageFinder, bad: list[str]):
    keys = ("image_path", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "true_caption", "false_caption",
            "relation_name" if part == "vg_relation" else "attributes")
    for k, entry in enumerate(raw):
        got = fields(entry, keys, path, f"entry {k}", bad)
        if got is None:
            continue
        image, x, y, w, h, true, false, cat = got
        at = f"{path}: entry {k}"
        x, y = (number(v, f"{at}: {name}", minimum=0) for v, name in ((x, "bbox_x"), (y, "bbox_y")))
        w, h = (number(v, f"{at}: {name}", positive=True) for v, name in ((w, "bbox_w"), (h, "bbox_h")))
        true, false = text(true, f"{at}: true_caption"), text(false, f"{at}: false_caption")
        if part == "vg_attribution":
            cat = "_".join(texts(cat, f"{at}: attributes", exactly=2))
        else:
            cat = text(cat, f"{at}: relation_name")
        box = tuple(int(v) if v.is_integer() else v for v in (x, y, w, h))  # the label reads as the file did
        yield ((f"{image}#{box}", finder.find(image, f"{path}: entry {k}: image_path")),), (true, false), part, str(cat)


def _order_items(part: str, path, raw, finder: ImageFinder, bad: list[str]):
    for k, entry in enumerate(raw):
        got = fields(entry, ("image", "caption_options"), path, f"entry {k}", bad)
        if got is None:
            continue
        options = tuple(texts(got[1], f"{path}: entry {k}: caption_options", at_least=2))
        yield ((f"{got[0]}#None", finder.find(got[0], f"{path}: entry {k}: image")),), options, part, None


def _box(label: str):
    text = label.rsplit("#", 1)[1]
    return None if text == "None" else tuple(float(v) for v in text.strip("()").split(","))


def _boxes_inside(labels, paths) -> list:
    """Each image's box, refused when it misses the image entirely (scored, it would be an empty
    crop); the size comes from the file's header alone. A box partly outside is cut at the
    image's edge by the crop, as ARO's own ``image.crop`` does."""
    from PIL import Image

    sizes: dict = {}
    boxes = [_box(lb) for lb in labels]
    for label, path, box in zip(labels, paths, boxes):
        if box is None:
            continue
        if path not in sizes:
            with Image.open(path) as im:
                sizes[path] = im.size
        (width, height), (x, y, w, h) = sizes[path], box
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            raise DatasetError(f"{path}: ARO box (x, y, w, h) = {label.rsplit('#', 1)[1]} lies outside the "
                               f"{width}x{height} image; fix or drop that entry of the annotation file")
    return boxes


def load(spec, request: DatasetRequest) -> CaptionSelectionData:
    info: dict = {}
    items, where = [], []
    for part in parts_for(spec, request.split, PARTS):
        path = find_file(spec, request.data_root, (FILES[part],), FILES[part], "" if part.startswith("vg_") else
                         "the Order sets are built from ARO's code (see harness/datasets/aro.py); "
                         "--split vg_relation or vg_attribution runs without them")
        raw = [entry for _, entry in entries(read_json(path, info, request.strict), path, list, "[{...}, ...]")]
        if part.startswith("vg_"):
            finder = ImageFinder(image_folders(spec.folder, request.data_root, ("images",)))
            make = _vg_items
        else:
            finder = ImageFinder(image_folders(ORDER_IMAGES[part], request.data_root, ("",))
                                 + image_folders(spec.folder, request.data_root, ("", "images")))
            make = _order_items
        bad: list[str] = []
        items += list(make(part, path, raw, finder, bad))
        report_bad(NAME, path, bad, request.strict, info)
        where.append(finder.where())
    return assemble_selection(NAME, request.split, items, selection_spec(), "; ".join(where),
                              "unzip ARO's vgr_vga_images.zip into aro/images/ (Order sets: COCO / Flickr30k images)",
                              (), info, request,
                              image_set=lambda labels, paths: CroppedImages(paths, _boxes_inside(labels, paths)))


def probe(spec, data_root: str | None) -> str | None:
    return probe_parts(lambda part: find_file(spec, data_root, (FILES[part],), FILES[part]),
                       ("vg_relation", "vg_attribution"))


FORMAT = Format(name=NAME, tasks=(TaskKind.CAPTION_SELECTION,), load=load, probe=probe)
