"""Issue 22, item 1: nothing written outside --results, nothing read from outside the data root.

Each loader case puts a readable image one folder ABOVE the data root and names it with
``../``: before the fix every loader opened it (and scored it); now the load fails naming the
file, the entry and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.datasets import DATASETS, DatasetRequest, TaskKind
from harness.datasets.base import DatasetError
from harness.results import store
from tests.imagefiles import write_jpeg
from tests.test_caption_selection import _aro, _image, _sugarcrepe, _winoground
from tests.test_karpathy import karpathy_json
from tests.test_loaders import load, make_coco2017, make_csv, user_registry  # noqa: F401 - fixture

CS = TaskKind.CAPTION_SELECTION
LEAVES = "leaves the data folder"


def outside_image(tmp_path: Path) -> Path:
    """A valid image beside (not inside) the data root ``tmp_path / "root"``."""
    return _image(tmp_path / "secret.jpg", "red")


def load_cs(name: str, split: str, root: Path):
    return DATASETS.get(name).load(DatasetRequest(split, CS, data_root=str(root)))


# ------------------------------------------------------------------ the store and the importer

def test_import_with_dotdot_dataset_writes_nothing_outside_the_store(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"dataset": "..", "model": "ViT-B-32", "pretrained": "openai",
                               "task": "zeroshot_retrieval", "metrics": {"image_retrieval_recall@5": 0.5}}))
    results = tmp_path / "store" / "res"
    assert main(["import", "clip-benchmark", str(bad), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"vlbench: error: {bad}: dataset '..' is not a dataset name (a path part '..'); "
                   "CLIP_benchmark names look like 'flickr30k' or 'wds/vtab/cifar10'")
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("dataset, task", [("..", "retrieval"), ("../..", "retrieval"), ("x", ".."),
                                           (".hidden", "retrieval"), ("/etc", "../../tmp")])
def test_record_path_stays_inside_the_store_and_visible(tmp_path, dataset, task):
    root = tmp_path / "res"
    path = store.record_path(root, "m/../..", dataset, "../test", task, "0123456789abcdef")
    assert root in path.parents and path.parent.parent.parent == root
    assert not any(part.startswith(".") for part in path.relative_to(root).parts)


def test_inside_refuses_a_path_that_leaves(tmp_path):
    root = tmp_path / "res"
    assert store.inside(root, root / "a" / "b.json") == root / "a" / "b.json"
    with pytest.raises(store.StorageError, match=r"outside the results folder"):
        store.inside(root, root / "a" / ".." / ".." / "b.json")
    with pytest.raises(store.StorageError, match=r"outside the results folder"):
        store.inside(root, tmp_path / "res-sibling" / "b.json")  # a shared prefix is not inside


# ------------------------------------------------------------------ every loader joining a path from a file

def test_sugarcrepe_filename_outside_the_root(tmp_path):
    outside_image(tmp_path)
    root = _sugarcrepe(tmp_path / "root")
    part = root / "sugarcrepe" / "add_att.json"
    entries = json.loads(part.read_text())
    entries["1"]["filename"] = "../../../secret.jpg"  # from coco/val2017/ up to tmp_path
    part.write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match=rf"add_att\.json: entry '1': filename '\.\./\.\./\.\./secret\.jpg' {LEAVES}"):
        load_cs("sugarcrepe", "add_att", root)


def test_sugarcrepe_absolute_filename(tmp_path):
    secret = outside_image(tmp_path)
    root = _sugarcrepe(tmp_path / "root")
    part = root / "sugarcrepe" / "swap_obj.json"
    entries = json.loads(part.read_text())
    entries["0"]["filename"] = str(secret)
    part.write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match=rf"swap_obj\.json: entry '0': filename .* {LEAVES}"):
        load_cs("sugarcrepe", "swap_obj", root)


def test_aro_image_path_outside_the_root(tmp_path):
    outside_image(tmp_path)
    root = _aro(tmp_path / "root", with_order=False)
    path = root / "aro" / "visual_genome_relation.json"
    rows = json.loads(path.read_text())
    rows[2]["image_path"] = "../../../secret.jpg"
    path.write_text(json.dumps(rows))
    with pytest.raises(DatasetError, match=rf"visual_genome_relation\.json: entry 2: image_path .* {LEAVES}"):
        load_cs("aro", "vg_relation", root)


def test_winoground_image_outside_the_root(tmp_path):
    _image(tmp_path / "secret.png", "red")
    root = _winoground(tmp_path / "root")
    path = root / "winoground" / "data" / "examples.jsonl"
    lines = path.read_text().splitlines()
    row = json.loads(lines[1])
    row["image_1"] = "../../../../secret"
    lines[1] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"examples\.jsonl: line 2: image_1 .* {LEAVES}"):
        load_cs("winoground", "test", root)


def test_valse_dataset_field_outside_the_root(tmp_path):
    outside_image(tmp_path)
    folder = tmp_path / "root" / "valse"
    _image(folder / "images" / "b.jpg", "blue")
    entries = {"e0": {"dataset": "../../..", "image_file": "secret.jpg", "caption": "a red dog",
                      "foil": "a blue dog", "mturk": {"foil": 0, "caption": 3, "other": 0}}}
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "existence.json").write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match=rf"existence\.json: entry 'e0': dataset .* {LEAVES}"):
        load_cs("valse", "existence", tmp_path / "root")


def test_karpathy_filepath_outside_the_root(tmp_path):
    outside_image(tmp_path)
    root = tmp_path / "root"
    write_jpeg(root / "coco" / "val2014" / "a.jpg")
    (root / "coco").mkdir(parents=True, exist_ok=True)
    (root / "coco" / "dataset_coco.json").write_text(json.dumps(karpathy_json(
        [("val2014", "a.jpg", "test", 5), ("../..", "secret.jpg", "test", 5)])))
    with pytest.raises(DatasetError, match=rf"dataset_coco\.json: images\[1\]: filepath/filename .* {LEAVES}"):
        load("coco", "test", root)


def test_coco_captions_file_name_outside_the_root(tmp_path):
    outside_image(tmp_path)
    make_coco2017(tmp_path / "root", images=[(1, "000000000001.jpg"), (2, "../../secret.jpg")],
                  anns=[(1, 1, "a"), (2, 2, "b")], skip_files=("../../secret.jpg",))
    with pytest.raises(DatasetError, match=rf"captions_val2017\.json: images\[1\]: file_name .* {LEAVES}"):
        load("coco2017", "val", tmp_path / "root")


def test_csv_file_outside_the_root(tmp_path, user_registry):  # noqa: F811 - the fixture
    write_jpeg(tmp_path / "secret.jpg")
    path = make_csv(tmp_path / "root", b"file,label\nc1.jpg,0\n../../../secret.jpg,1\n")
    with pytest.raises(DatasetError, match=rf"labels_test\.csv: line 3: file .* {LEAVES}"):
        user_registry.get("pets-csv").load(DatasetRequest("test", TaskKind.ZEROSHOT, data_root=str(tmp_path / "root")))
    assert path.is_file()


def _coco_hf(root: Path, filepaths: list, filenames: list) -> None:
    """A ``save_to_disk`` copy of yerevann/coco-karpathy's columns (captions and file names)."""
    import datasets

    rows = {"sentences": [["a red square", "a square"] for _ in filenames], "filepath": filepaths,
            "filename": filenames}
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(str(root / "coco-hf"))


def test_hf_rows_naming_files_outside_the_root(tmp_path):
    outside_image(tmp_path)
    root = tmp_path / "root"
    write_jpeg(root / "coco" / "val2014" / "a.jpg")
    _coco_hf(root, ["val2014", "../.."], ["a.jpg", "secret.jpg"])
    with pytest.raises(DatasetError, match=rf"root/coco-hf: row 1: filepath '\.\./\.\.' {LEAVES}"):
        load("coco-hf", "test", root)
    _coco_hf(tmp_path / "typed", ["val2014", "val2014"], ["a.jpg", None])
    with pytest.raises(DatasetError, match=r"typed/coco-hf: row 1: filename: expected a string, got null None"):
        load("coco-hf", "test", tmp_path / "typed")
