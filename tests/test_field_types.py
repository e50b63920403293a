"""Issue 22, item 4: a wrong-typed field in a data file is one DatasetError naming the file,
the entry (or line) and the field; before the fix each of the first eight cases raised an
internal TypeError / ValueError / AttributeError / ZeroDivisionError naming nothing."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from harness.datasets import DATASETS, DatasetRequest, TaskKind
from harness.datasets.base import DatasetError
from tests.imagefiles import write_jpeg
from tests.test_caption_selection import _aro, _image, _sugarcrepe, _winoground
from tests.test_karpathy import karpathy_json
from tests.test_loaders import make_coco2017


def _edit_json(path: Path, change) -> Path:
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))
    return path


def _set(index, key, value):
    def change(raw):
        raw[index][key] = value
    return change


def _valse(root: Path) -> Path:
    folder = root / "valse"
    _image(folder / "images" / "SWiG" / "a.jpg", "red")
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "existence.json").write_text(json.dumps({"e0": {
        "dataset": "SWiG", "image_file": "a.jpg", "caption": "a red dog", "foil": "a blue dog",
        "mturk": {"foil": 0, "caption": 3, "other": 0}}}))
    return root


def _winoground_line(root: Path, n: int, key: str, value) -> None:
    path = root / "winoground" / "data" / "examples.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[n - 1])
    row[key] = value
    lines[n - 1] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")


def _sc(index, key, value):
    def build(root):
        _sugarcrepe(root)
        _edit_json(root / "sugarcrepe" / "add_obj.json", _set(index, key, value))
        return "sugarcrepe", "add_obj"
    return build


def _vg(index, key, value, part="vg_relation"):
    def build(root):
        _aro(root, with_order=False)
        name = "visual_genome_relation.json" if part == "vg_relation" else "visual_genome_attribution.json"
        _edit_json(root / "aro" / name, _set(index, key, value))
        return "aro", part
    return build


def _wino(n, key, value):
    def build(root):
        _winoground(root)
        _winoground_line(root, n, key, value)
        return "winoground", "test"
    return build


def _va(key, value):
    def build(root):
        _valse(root)
        _edit_json(root / "valse" / "data" / "existence.json", _set("e0", key, value))
        return "valse", "existence"
    return build


CASES = [  # (build, file, message after "<file>: ")
    # the eight of the issue
    (_sc("2", "filename", 5), "add_obj.json", "entry '2': filename: expected a string, got int 5"),
    (_sc("1", "caption", ["a", "b"]), "add_obj.json", "entry '1': caption: expected a string, got list ['a', 'b']"),
    (_vg(1, "bbox_x", "abc"), "visual_genome_relation.json", "entry 1: bbox_x: expected a number, got str 'abc'"),
    (_vg(0, "bbox_w", -50), "visual_genome_relation.json", "entry 0: bbox_w: expected a number above 0, got -50"),
    (_vg(3, "bbox_w", 0), "visual_genome_relation.json", "entry 3: bbox_w: expected a number above 0, got 0"),
    (_vg(2, "true_caption", 12345), "visual_genome_relation.json",
     "entry 2: true_caption: expected a string, got int 12345"),
    (_wino(2, "image_0", 5), "examples.jsonl", "line 2: image_0: expected a string, got int 5"),
    (_va("image_file", ["x"]), "existence.json", "entry 'e0': image_file: expected a string, got list ['x']"),
    # the same check in the fields around them
    (_sc("0", "negative_caption", {"t": 1}), "add_obj.json",
     "entry '0': negative_caption: expected a string, got dict {'t': 1}"),
    (_vg(0, "bbox_y", True), "visual_genome_relation.json", "entry 0: bbox_y: expected a number, got bool True"),
    (_vg(1, "relation_name", 7), "visual_genome_relation.json", "entry 1: relation_name: expected a string, got int 7"),
    (_vg(4, "attributes", ["green"], "vg_attribution"), "visual_genome_attribution.json",
     "entry 4: attributes: expected 2 strings, got 1"),
    (_wino(1, "caption_1", 3.5), "examples.jsonl", "line 1: caption_1: expected a string, got float 3.5"),
    (_wino(3, "collapsed_tag", ["Object"]), "examples.jsonl",
     "line 3: collapsed_tag: expected a string, got list ['Object']"),
    (_va("foil", 0.5), "existence.json", "entry 'e0': foil: expected a string, got float 0.5"),
    (_va("mturk", {"caption": "3"}), "existence.json",
     "entry 'e0': mturk: expected an object with a whole-number 'caption' vote count, got {'caption': '3'}"),
]


@pytest.mark.parametrize("build, file, message", CASES)
def test_wrong_typed_field_names_file_entry_and_field(tmp_path, build, file, message):
    name, split = build(tmp_path)
    with pytest.raises(DatasetError) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        DATASETS.get(name).load(DatasetRequest(split, TaskKind.CAPTION_SELECTION, data_root=str(tmp_path)))
    text = str(caught.value)
    assert re.fullmatch(rf".*/{re.escape(file)}: {re.escape(message)}", text), text
    assert "\n" not in text


def test_aro_order_caption_options_are_checked(tmp_path):
    _aro(tmp_path)
    _edit_json(tmp_path / "aro" / "coco_order.json", _set(0, "caption_options", ["a yellow bus", None, "x"]))
    with pytest.raises(DatasetError, match=r"coco_order\.json: entry 0: caption_options\[1\]: expected a string, "
                                           r"got null None"):
        DATASETS.get("aro").load(DatasetRequest("coco_order", TaskKind.CAPTION_SELECTION, data_root=str(tmp_path)))


def test_coco_and_karpathy_captions_of_the_wrong_type_are_named(tmp_path):
    make_coco2017(tmp_path, anns=[(1, 139, "a room"), (2, 285, ["a", "bear"]), (3, 632, "a bed")])
    with pytest.raises(DatasetError, match=r"captions_val2017\.json: annotations\[1\]: caption: expected a string, "
                                           r"got list \['a', 'bear'\]"):
        DATASETS.get("coco2017").load(DatasetRequest("val", TaskKind.RETRIEVAL, data_root=str(tmp_path)))
    write_jpeg(tmp_path / "k" / "coco" / "val2014" / "a.jpg")
    doc = karpathy_json([("val2014", "a.jpg", "test", 2)])
    doc["images"][0]["sentences"][1]["raw"] = 42
    (tmp_path / "k" / "coco" / "dataset_coco.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=r"dataset_coco\.json: images\[0\]: sentences\[1\]: raw: expected a "
                                           r"string, got int 42"):
        DATASETS.get("coco").load(DatasetRequest("test", TaskKind.RETRIEVAL, data_root=str(tmp_path / "k")))
