"""``--dataset jsonl:DIR``: a user's own image + text -> label folder, read with no code and
no manifest entry; every problem named by file and line; and the synthetic verify / qa views
(balanced so that one modality alone is at chance)."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import pytest

from harness.datasets import DATASETS, resolve_dataset
from harness.datasets.base import DatasetError, DatasetNotFound, DatasetRequest, TaskKind
from harness.datasets.pair_labels import check_holdout, check_labels
from tests.test_pair_loaders import write_lines, write_png

ITC = TaskKind.IMAGE_TEXT_CLASSIFICATION


def make_folder(root: Path, train=None, test=None, val=None) -> Path:
    train = train or [("imgs/a.png", "a red thing", "red"), ("imgs/b.png", "blue sky", "blue"),
                      ("imgs/c.png", "more red", "red"), ("imgs/d.png", "blue again", "blue")]
    test = test or [("imgs/e.png", "red or not", "red"), ("imgs/f.png", "green grass", "green")]
    for split, rows in (("train", train), ("test", test), ("val", val)):
        if rows is None:
            continue
        write_lines(root / f"{split}.jsonl", [r if isinstance(r, (dict, str)) else {"image": r[0], "text": r[1], "label": r[2]}
                                              for r in rows])
        for r in rows:
            if not isinstance(r, (dict, str)):
                write_png(root / r[0])
    return root


def load(name: str, split: str, **kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        data = resolve_dataset(name).load(DatasetRequest(split, ITC, **kw))
    return data, "\n".join(str(w.message) for w in rec)


def test_a_folder_made_by_hand(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "mine")
    meta = resolve_dataset(f"jsonl:{folder}")
    assert meta.name == f"jsonl:{folder.resolve()}" and meta.splits == ("train", "test") and meta.default_split == "test"
    train, _ = load(f"jsonl:{folder}", "train")
    test, _ = load(f"jsonl:{folder}", "test")
    assert train.classnames == test.classnames == ["blue", "green", "red"]  # every split's labels, sorted
    assert train.labels == [2, 0, 2, 0] and test.labels == [2, 1] and not train.multilabel
    assert train.texts[1] == "blue sky" and train.images.paths[0] == folder / "imgs" / "a.png"
    assert test.origins == ["test.jsonl:1", "test.jsonl:2"]
    with pytest.warns(UserWarning, match=r"test: 1 item\(s\) carry label\(s\) the train split never has \('green'\), "
                                         r"e.g. test.jsonl:2"):
        assert check_labels(train, test) == {"unseen_classes": ["green"], "unseen_items": 1}
    check_holdout(train)  # two per class
    assert resolve_dataset("synth").name == "synthetic"  # registered names still resolve


def test_val_multilabel_and_numeric_labels(tmp_path: Path) -> None:
    rows = [("x/1.png", "plot one", ["drama", "crime"]), ("x/2.png", "plot two", ["comedy"])]
    folder = make_folder(tmp_path / "multi", train=rows, test=rows[:1], val=rows[1:])
    assert resolve_dataset(f"jsonl:{folder}").splits == ("train", "val", "test")
    d, _ = load(f"jsonl:{folder}", "train")
    assert d.multilabel and d.classnames == ["comedy", "crime", "drama"] and d.labels == [[1, 2], [0]]
    nums = make_folder(tmp_path / "nums", train=[("a.png", "t", 10), ("b.png", "t", 2)], test=[("c.png", "t", "9")])
    d, _ = load(f"jsonl:{nums}", "train")
    assert d.classnames == ["2", "9", "10"] and d.labels == [2, 0]  # integers sort as numbers


@pytest.mark.parametrize("line, message", [
    ({"image": "imgs/e.png", "text": "t", "label": 1.5}, r"test.jsonl:2: field 'label' must be a non-empty string, an "
                                                         r"integer or a list of them, got float 1.5"),
    ({"image": "imgs/e.png", "text": "t", "label": None}, r"test.jsonl:2: field 'label' .* got NoneType None"),
    ({"image": "imgs/e.png", "text": "t", "label": {"a": 1}}, r"test.jsonl:2: field 'label' .* got dict"),
    ({"image": "imgs/e.png", "text": "t", "label": []}, r"test.jsonl:2: a multi-label item with no labels"),
    ({"image": "imgs/e.png", "text": "t", "label": ["red"]},
     r"test.jsonl:2: label is a list but .*train.jsonl:1 has a single label"),
    ({"image": "imgs/e.png", "text": "t"}, r"test.jsonl:2: missing field 'label'"),
    ({"image": "imgs/e.png", "label": "red"}, r"test.jsonl:2: missing field 'text'"),
    ({"image": 3, "text": "t", "label": "red"}, r"test.jsonl:2: field 'image' must be str, got int"),
    ({"image": "../../etc/passwd", "text": "t", "label": "red"}, r"test.jsonl:2: image path '../../etc/passwd' leaves"),
    ({"image": "/etc/passwd", "text": "t", "label": "red"}, r"test.jsonl:2: image path '/etc/passwd' must be relative"),
    ({"image": "imgs/none.png", "text": "t", "label": "red"}, r"1 of 2 images are missing .*test.jsonl:2 \(imgs/none.png\)"),
])
def test_bad_lines_name_file_and_line(tmp_path: Path, line, message) -> None:
    folder = make_folder(tmp_path / "bad", test=[("imgs/e.png", "red or not", "red"), line])
    with pytest.raises(DatasetError, match=message):
        load(f"jsonl:{folder}", "test")


def test_image_symlink_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    outside = write_png(tmp_path / "outside.png")
    folder = make_folder(tmp_path / "links", test=[("imgs/e.png", "t", "red"), {"image": "l.png", "text": "t", "label": "red"}])
    (folder / "l.png").symlink_to(outside)
    with pytest.raises(DatasetError, match=r"test.jsonl:2: image path 'l.png' leaves"):
        load(f"jsonl:{folder}", "test")


def test_missing_folder_files_and_empty_split(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFound, match=r"jsonl:.*nowhere: folder .* not found"):
        resolve_dataset(f"jsonl:{tmp_path / 'nowhere'}")
    folder = make_folder(tmp_path / "f")
    (folder / "test.jsonl").unlink()
    with pytest.raises(DatasetNotFound, match=r"test.jsonl not found in"):
        resolve_dataset(f"jsonl:{folder}")
    (folder / "test.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match=r"test.jsonl: empty split \(no items\)"):
        load(f"jsonl:{folder}", "test")
    with pytest.raises(DatasetError, match="has no split 'val'"):
        load(f"jsonl:{folder}", "val")


def test_a_manifest_entry_can_name_such_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.datasets import FORMATS, build_registry, resource
    from harness.datasets.manifest import parse_manifest

    make_folder(tmp_path / "colours")
    text = ("schema_version: 1\ndatasets:\n  colours:\n    tasks: [image_text_classification]\n    format: jsonl\n"
            "    source: {kind: local, folder: colours}\n    default_split: test\n"
            "    splits: {train: {items: 4}, test: {items: 3}}\n    license: mine\n    citation: mine\n")
    reg = build_registry(parse_manifest(text, "mine.yaml", FORMATS, resource))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        d = reg.get("colours").load(DatasetRequest("test", ITC, data_root=str(tmp_path)))
    assert d.labels == [2, 1] and d.info["count_mismatch"] == ["2 items (expected 3)"]
    assert any("loaded 2 items (expected 3)" in str(w.message) for w in rec)


def test_cli_describe_jsonl_folder(capsys, tmp_path: Path) -> None:
    from harness.cli.main import main

    folder = make_folder(tmp_path / "mine")
    code = main(["data", "describe", f"jsonl:{folder}", "--split", "train"])
    out = capsys.readouterr().out
    assert code == 0 and "image_text_classification.items: 4" in out and "usable: True" in out
    assert "image_text_classification.class_counts: blue=2, green=0, red=2" in out
    assert "image_text_classification.kind: multiclass" in out


# ------------------------------------------------------------------ synthetic views

@pytest.fixture(scope="module")
def verify():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DATASETS.get("synthetic-verify").load(DatasetRequest("test", ITC))


def test_synthetic_verify_is_balanced_per_statement_and_per_image(verify) -> None:
    assert len(verify) == 1000 and verify.classnames == ["false", "true"] and verify.counts()["labels_used"] == 2
    by_text = Counter(zip(verify.texts, verify.labels))
    assert all(by_text[(t, 0)] == by_text[(t, 1)] for t in set(verify.texts))  # text alone: chance
    by_image = Counter(zip(verify.images.paths, verify.labels))
    assert all(by_image[(p, 0)] == by_image[(p, 1)] for p in set(verify.images.paths))  # image alone: chance
    assert verify.info["images_used"] == 500 and sum(verify.info["item_kinds"].values()) == 1000
    assert set(Counter(verify.holdout_groups).values()) == {4}  # an image pair's four items stay together
    again = DATASETS.get("synthetic-verify").load(DatasetRequest("test", ITC))
    assert again.fingerprint == verify.fingerprint and again.texts == verify.texts


def test_synthetic_verify_statements_are_true_exactly_when_labelled(verify) -> None:
    from harness.datasets import synthetic

    scenes = {e["file"].split("/")[-1]: e for e in json.loads(
        (verify.images.paths[0].parent.parent / "annotations.json").read_text())["images"]}
    for path, text, y in zip(verify.images.paths, verify.texts, verify.labels):
        assert (text in synthetic.captions(scenes[path.name]["scene"])) == bool(y)


def test_synthetic_qa_answers_the_asked_shape() -> None:
    import json as _json

    d = DATASETS.get("synthetic-qa").load(DatasetRequest("val", ITC))
    assert len(d) == 1000 and d.classnames == ["red", "green", "blue", "yellow", "purple", "orange"]
    scenes = {e["file"].split("/")[-1]: e["scene"] for e in _json.loads(
        (d.images.paths[0].parent.parent / "annotations.json").read_text())["images"]}
    for path, text, y in zip(d.images.paths, d.texts, d.labels):
        shape = text.removeprefix("what colour is the ").removesuffix("?")
        (obj,) = [o for o in scenes[path.name]["objects"] if o["shape"] == shape]
        assert d.classnames[y] == obj["colour"]
    assert Counter(d.images.paths).most_common(1)[0][1] == 2  # both objects of each scene asked about
    sub = DATASETS.get("synthetic-qa").load(DatasetRequest("val", ITC, limit=100, seed=1))
    assert len(sub) == 100 and sub.info["subset"] == {"limit": 100, "seed": 1, "unit": "items"}
