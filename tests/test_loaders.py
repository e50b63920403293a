"""Loaders of the official formats, on tiny fixtures built in tmp dirs: COCO captions JSON,
ImageFolder, CSV + class names, CIFAR-10/100 pickles, Hugging Face save_to_disk copies."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest

from harness.datasets import DATASETS, FORMATS, build_registry
from harness.datasets.base import DatasetError, DatasetRequest, TaskKind
from harness.datasets.manifest import parse_manifest
from harness.datasets.resources import resource, templates
from tests.imagefiles import write_jpeg

RET, ZS = TaskKind.RETRIEVAL, TaskKind.ZEROSHOT


def load(name: str, split: str, root: Path, task: TaskKind = RET, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DATASETS.get(name).load(DatasetRequest(split, task, data_root=str(root), **kw))


def recording(name: str, split: str, root: Path, task: TaskKind = RET, registry=None, **kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        data = (registry or DATASETS).get(name).load(DatasetRequest(split, task, data_root=str(root), **kw))
    return data, "\n".join(str(w.message) for w in rec)


# ------------------------------------------------------------------ COCO official captions

def coco_captions(images: list[tuple[int, str]], anns: list[tuple[int, int, str]]) -> dict:
    return {"info": {}, "licenses": [], "images": [{"id": i, "file_name": f, "height": 8, "width": 8} for i, f in images],
            "annotations": [{"id": a, "image_id": i, "caption": c} for a, i, c in anns]}


def make_coco2017(root: Path, images=None, anns=None, split: str = "val2017", skip_files=()) -> Path:
    images = images or [(139, "000000000139.jpg"), (285, "000000000285.jpg"), (632, "000000000632.jpg")]
    anns = anns or [(1, 285, "a bear"), (2, 139, "a room"), (3, 285, "a big bear "), (4, 632, "a bed"),
                    (5, 139, "a living room")]
    for _, fname in images:
        if fname not in skip_files:
            write_jpeg(root / "coco" / split / fname)
    ann = root / "coco" / "annotations" / f"captions_{split}.json"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps(coco_captions(images, anns)))
    return ann


def test_coco2017_official_counts_and_mapping(tmp_path: Path) -> None:
    make_coco2017(tmp_path)
    d, text = recording("coco2017", "val", tmp_path)
    assert [p.name for p in d.images.paths] == ["000000000139.jpg", "000000000285.jpg", "000000000632.jpg"]
    assert d.captions == ["a room", "a living room", "a bear", "a big bear", "a bed"]
    assert d.caption_to_image == [0, 0, 1, 1, 2]
    assert d.images.paths[0] == tmp_path / "coco" / "val2017" / "000000000139.jpg"
    assert d.info["count_mismatch"] == ["3 images (expected 5000)", "5 captions (expected 25014)"]
    assert "loaded 3 images (expected 5000)" in text
    assert len(d.info["sha256"]["captions_val2017.json"]) == 64


def test_coco2014_train_uses_its_release_split(tmp_path: Path) -> None:
    make_coco2017(tmp_path, images=[(9, "COCO_train2014_000000000009.jpg")], anns=[(1, 9, "food")],
                  split="train2014")
    d = load("coco2014", "train", tmp_path)
    assert d.captions == ["food"] and d.images.paths[0].parent.name == "train2014"


def test_coco_official_bad_entries(tmp_path: Path) -> None:
    images = [(1, "a.jpg"), (2, "b.jpg"), (2, "b_again.jpg"), (3, "c.jpg")]
    anns = [(10, 1, "one"), (11, 2, "two"), (11, 2, "dup id"), (12, 99, "orphan"), (13, 3, "  "), (14, 1, "uno")]
    make_coco2017(tmp_path, images, anns, split="train2017")
    d, text = recording("coco2017", "train", tmp_path)
    assert [p.name for p in d.images.paths] == ["a.jpg", "b.jpg"]  # c.jpg lost its only caption
    assert d.captions == ["one", "uno", "two"] and d.caption_to_image == [0, 0, 1]
    info = d.info
    assert (info["dropped_duplicate_images"], info["dropped_duplicate_annotations"]) == (1, 1)
    assert info["dropped_captions_for_unknown_images"] == 1 and info["dropped_empty_captions"] == 1
    assert info["dropped_images_without_captions"] == 1
    ann = str(tmp_path / "coco" / "annotations" / "captions_train2017.json")
    assert f"caption(s) for an image id not in the file skipped in {ann}, annotations[3]" in text
    assert "repeated image id(s), first kept skipped" in text and "images[2]" in text
    with pytest.raises(DatasetError, match=r"--strict"):
        load("coco2017", "train", tmp_path, strict=True)


def test_coco_official_missing_image_fails_val(tmp_path: Path) -> None:
    make_coco2017(tmp_path, skip_files=("000000000285.jpg",))
    with pytest.raises(DatasetError, match=r"1 of 3 images are missing .*000000000285\.jpg"):
        load("coco2017", "val", tmp_path)


def test_coco_official_not_found_and_malformed(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"captions_val2017\.json not found .*--data-root"):
        load("coco2017", "val", tmp_path)
    ann = make_coco2017(tmp_path)
    ann.write_text('{"images": [], "annotations": [')
    with pytest.raises(DatasetError, match=r"captions_val2017\.json: malformed JSON at line 1"):
        load("coco2017", "val", tmp_path)
    ann.write_text('{"images": []}')
    with pytest.raises(DatasetError, match=r"not a COCO captions file"):
        load("coco2017", "val", tmp_path)


# ------------------------------------------------------------------ ImageFolder and CSV

USER_MANIFEST = """\
schema_version: 1
datasets:
  pets:
    tasks: [zeroshot]
    format: imagefolder
    source: {kind: local, folder: pets}
    default_split: val
    splits:
      val: {images: 5}
      train: {}
    classes: {names: folders, templates: ["a photo of a {}.", "a {}."]}
    license: CC0
    citation: none
  pets-csv:
    tasks: [zeroshot]
    format: csv
    options: {file: "labels_{split}.csv", image_dir: img}
    source: {kind: local, folder: petscsv}
    default_split: test
    splits:
      test: {partial_ok: true}
    classes: {names: classnames.txt, templates: cifar10}
    license: CC0
    citation: none
"""


@pytest.fixture
def user_registry():
    return build_registry(parse_manifest(USER_MANIFEST, "user.yaml", FORMATS, resource))


def make_folder(root: Path) -> None:
    for cls, names in {"great_dane": ["b.jpg", "a.jpg"], "cat": ["z.png", "y.jpg", "notes.txt"],
                       "zebra": ["q.jpeg"]}.items():
        for n in names:
            p = root / "pets" / "val" / cls / n
            if n.endswith(".txt"):
                p.write_text("not an image")
            else:
                write_jpeg(p)


def test_imagefolder_labels_follow_sorted_folders(tmp_path: Path, user_registry) -> None:
    make_folder(tmp_path)
    d, text = recording("pets", "val", tmp_path, ZS, registry=user_registry)
    assert d.classnames == ["cat", "great dane", "zebra"]
    assert [p.relative_to(tmp_path / "pets" / "val").as_posix() for p in d.images.paths] == \
        ["cat/y.jpg", "cat/z.png", "great_dane/a.jpg", "great_dane/b.jpg", "zebra/q.jpeg"]
    assert d.labels == [0, 0, 1, 1, 2] and d.templates == ["a photo of a {}.", "a {}."]
    assert d.info["ignored_files"] == 1 and text == ""  # 5 images as the manifest expects
    with pytest.raises(DatasetError, match=r"pets/train: split folder not found"):
        user_registry.get("pets").load(DatasetRequest("train", ZS, data_root=str(tmp_path)))


def test_imagenet_curated_names_need_one_folder_per_class(tmp_path: Path) -> None:
    for wnid in ("n01440764", "n01443537"):
        write_jpeg(tmp_path / "imagenet" / "val" / wnid / "x.JPEG")
    with pytest.raises(DatasetError, match=r"2 class folders under .* but 1000 names in the curated list 'imagenet1k'"):
        load("imagenet1k", "val", tmp_path, ZS)


def test_imagenet_names_and_templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wnids = [f"n{i:08d}" for i in range(1000)]
    for w in wnids[:3]:
        write_jpeg(tmp_path / "imagenet" / "val" / w / "x.JPEG")
    for w in wnids[3:]:
        (tmp_path / "imagenet" / "val" / w).mkdir(parents=True)
    d = load("imagenet1k", "val", tmp_path, ZS)
    assert d.classnames[:3] == ["tench", "goldfish", "great white shark"] and len(d.classnames) == 1000
    assert d.labels == [0, 1, 2] and len(d.templates) == 80 and d.info["n_classes_without_images"] == 997


def make_csv(root: Path, rows: bytes) -> Path:
    base = root / "petscsv"
    (base / "img").mkdir(parents=True)
    (base / "classnames.txt").write_text("cat\ndog\nbird\n")
    for n in ("c1.jpg", "d1.jpg", "b1.jpg", "c2.jpg"):
        write_jpeg(base / "img" / n)
    (base / "labels_test.csv").write_bytes(rows)
    return base / "labels_test.csv"


def test_csv_rows_labels_and_bad_rows(tmp_path: Path, user_registry) -> None:
    rows = (b"file,label\n"                  # 1 header
            b"c1.jpg,0\n"                    # 2
            b"d1.jpg,dog\n"                  # 3 label by name
            b"b1.jpg,2\n"                    # 4
            b"c1.jpg,1\n"                    # 5 duplicate, labels disagree
            b"x.jpg\n"                       # 6 malformed
            b"c2.jpg,fish\n"                 # 7 unknown label
            b"caf\xe9.jpg,0\n"               # 8 non-UTF-8
            b"gone.jpg,1\n")                 # 9 missing image (split is partial_ok)
    path = make_csv(tmp_path, rows)
    d, text = recording("pets-csv", "test", tmp_path, ZS, registry=user_registry)
    assert [p.name for p in d.images.paths] == ["c1.jpg", "d1.jpg", "b1.jpg"]
    assert d.labels == [0, 1, 2] and d.classnames == ["cat", "dog", "bird"] and len(d.templates) == 18
    info = d.info
    assert (info["dropped_duplicate_rows"], info["conflicting_duplicate_labels"]) == (1, 1)
    assert (info["dropped_malformed_rows"], info["dropped_unknown_labels"], info["dropped_non_utf8_rows"]) == (1, 1, 1)
    assert info["dropped_missing_images"] == 1
    assert f"in {path}, line(s) 5" in text and "labels disagree for c1.jpg" in text
    assert f"in {path}, line(s) 6" in text and f"in {path}, line(s) 7" in text and f"in {path}, line(s) 8" in text
    assert "gone.jpg" in text
    with pytest.raises(DatasetError, match="--strict"):
        user_registry.get("pets-csv").load(DatasetRequest("test", ZS, data_root=str(tmp_path), strict=True))


def test_csv_missing_names_file(tmp_path: Path, user_registry) -> None:
    make_csv(tmp_path, b"c1.jpg,0\n")
    (tmp_path / "petscsv" / "classnames.txt").unlink()
    with pytest.raises(DatasetError, match=r"class-names file .*classnames\.txt not found"):
        user_registry.get("pets-csv").load(DatasetRequest("test", ZS, data_root=str(tmp_path)))
    assert "classnames.txt not found" in user_registry.get("pets-csv").availability(str(tmp_path))


# ------------------------------------------------------------------ "not found", structured

@pytest.mark.parametrize("name,task", [("coco2017", RET), ("cifar10", ZS), ("pets", ZS), ("pets-csv", ZS)])
def test_not_found_reason_is_what_availability_shows(tmp_path: Path, user_registry, name, task) -> None:
    """Loading says reason + how to point at a copy; ``list datasets`` shows the reason alone."""
    from harness.datasets import DatasetNotFound

    meta = (user_registry if name.startswith("pets") else DATASETS).get(name)
    with pytest.raises(DatasetNotFound) as e:
        meta.load(DatasetRequest(meta.default_split, task, data_root=str(tmp_path)))
    err = e.value
    assert str(err) == f"{err.reason}; {err.hint}" and err.reason.startswith(f"{name}")
    assert " not found (" in err.reason and str(tmp_path) in err.reason and "--data-root" not in err.reason
    assert err.hint.startswith("point at a copy with --data-root PATH (a folder holding ")
    assert err.hint.endswith("the VLBENCH_DATA environment variable")
    assert meta.availability(str(tmp_path)) == err.reason


def test_dataset_errors_keep_their_parts_through_pickle() -> None:
    from harness.datasets import DatasetNotFound
    from harness.datasets.images import ImageDecodeError

    for err in (DatasetNotFound("a: b/ not found (x)", "point at it", sep="\n"), DatasetError("just a reason"),
                ImageDecodeError("p.jpg: cannot decode image (bad)", "replace the file")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and (back.reason, back.hint, str(back)) == (err.reason, err.hint, str(err))
    assert str(DatasetNotFound("r", "h", sep="\n")) == "r\nh" and DatasetError("r").hint == ""


# ------------------------------------------------------------------ CIFAR pickles

def pixel_rows(n: int, offset: int) -> np.ndarray:
    """(n, 3072) rows whose red plane is offset+i, green 100, blue 200: easy to check after decode."""
    rows = np.zeros((n, 3, 1024), np.uint8)
    rows[:, 0] = (offset + np.arange(n))[:, None]
    rows[:, 1], rows[:, 2] = 100, 200
    return rows.reshape(n, 3072)


def dump(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def make_cifar10(root: Path) -> Path:
    d = root / "cifar10" / "cifar-10-batches-py"
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    dump(d / "batches.meta", {b"label_names": names, b"num_cases_per_batch": 2})
    for b in range(1, 6):
        dump(d / f"data_batch_{b}", {b"data": pixel_rows(2, 10 * b), b"labels": [b, b + 1],
                                     b"batch_label": b"training batch"})
    dump(d / "test_batch", {b"data": pixel_rows(3, 0), b"labels": [9, 0, 3], b"batch_label": b"testing batch"})
    return d


def test_cifar10_pickles(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    d = load("cifar10", "test", tmp_path, ZS)
    assert d.labels == [9, 0, 3] and d.classnames[:2] == ["airplane", "automobile"] and len(d.templates) == 18
    assert d.templates[0] == "a photo of a {}." and d.images.key(2) == "test_batch#2"
    im = d.images.load(2)
    assert im.size == (32, 32) and im.mode == "RGB" and im.getpixel((5, 7)) == (2, 100, 200)
    train = load("cifar10", "train", tmp_path, ZS)
    assert len(train.images) == 10 and train.labels == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert train.images.load(9).getpixel((0, 0))[0] == 51  # batch 5, second image
    assert train.info["count_mismatch"] == ["10 images (expected 50000)"]


def test_cifar100_fine_labels_and_names(tmp_path: Path) -> None:
    d = tmp_path / "cifar100" / "cifar-100-python"
    fine = [f"class_{i}".encode() for i in range(100)]
    dump(d / "meta", {b"fine_label_names": fine, b"coarse_label_names": [b"x"] * 20})
    dump(d / "test", {b"data": pixel_rows(2, 0), b"fine_labels": [99, 4], b"coarse_labels": [0, 0]})
    data = load("cifar100", "test", tmp_path, ZS)
    assert data.labels == [99, 4] and data.classnames[99] == "class 99" and len(data.classnames) == 100


def test_cifar_bad_files(tmp_path: Path) -> None:
    d = make_cifar10(tmp_path)
    dump(d / "test_batch", {b"data": pixel_rows(3, 0), b"labels": [1, 2]})
    with pytest.raises(DatasetError, match=r"test_batch: labels must list one label per image \(3\)"):
        load("cifar10", "test", tmp_path, ZS)
    dump(d / "test_batch", {b"data": pixel_rows(1, 0), b"labels": [10]})
    with pytest.raises(DatasetError, match=r"test_batch: a label is outside 0..9"):
        load("cifar10", "test", tmp_path, ZS)
    (d / "test_batch").write_bytes(b"\x80\x02cos\nsystem\nq\x00.")  # a pickle that would import os.system
    with pytest.raises(DatasetError, match=r"test_batch: not a CIFAR python pickle .*refusing to load os.system"):
        load("cifar10", "test", tmp_path, ZS)
    (d / "test_batch").unlink()
    with pytest.raises(DatasetError, match=r"test_batch not found"):
        load("cifar10", "test", tmp_path, ZS)
    assert DATASETS.get("cifar10").availability(str(tmp_path)).startswith("missing test_batch")


# ------------------------------------------------------------------ Hugging Face datasets

@pytest.fixture(scope="module")
def hf_copy(tmp_path_factory) -> Path:
    """A local save_to_disk copy shaped like nlphuji/flickr30k (one split, a 'split' column)."""
    import datasets
    from PIL import Image

    root = tmp_path_factory.mktemp("hfdata")
    rows = {"image": [Image.new("RGB", (6, 6), (i * 40, 0, 0)) for i in range(4)],
            "caption": [[f"img{i} cap{k}" for k in range(2)] for i in range(3)] + [["  "]],
            "split": ["test", "train", "test", "test"], "filename": [f"{i}.jpg" for i in range(4)]}
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Sequence(datasets.Value("string")),
                                  "split": datasets.Value("string"), "filename": datasets.Value("string")})
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows, features=features)}).save_to_disk(
        str(root / "flickr30k-hf"))
    return root


def test_hf_local_copy(hf_copy: Path) -> None:
    d, text = recording("flickr30k-hf", "test", hf_copy)
    assert d.captions == ["img0 cap0", "img0 cap1", "img2 cap0", "img2 cap1"]
    assert d.caption_to_image == [0, 0, 1, 1] and len(d.images) == 2
    assert d.images.load(1).getpixel((0, 0)) == (80, 0, 0) and d.images.key(1).endswith("/test#2")
    assert d.info["dropped_rows_without_captions"] == 1 and "1 row(s) without a caption" in text
    sub = load("flickr30k-hf", "test", hf_copy, limit=1, seed=0)
    assert len(sub.images) == 1 and sub.fingerprint != d.fingerprint
    assert DATASETS.get("flickr30k-hf").availability(str(hf_copy)) is None


def test_hf_offline_without_copy_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    with pytest.raises(DatasetError) as e:
        load("flickr30k-hf", "test", tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "nlphuji/flickr30k@main" in msg and "huggingface.co cannot be reached" in msg
    assert "--data-root" in msg and "save_to_disk" in msg
    assert "needs network" in DATASETS.get("flickr30k-hf").availability(str(tmp_path))


def test_every_template_set_used_by_the_manifest_exists() -> None:
    for name, meta in DATASETS.items():
        value = meta.spec.classes.get("templates")
        if value is not None:
            assert all("{}" in t for t in templates(value)), name


def test_each_format_is_one_module() -> None:
    import harness.datasets as D

    for name, fmt in FORMATS.items():
        module = fmt.load.__module__ if hasattr(fmt.load, "__module__") else None
        assert module and module.startswith("harness.datasets."), name
    assert {"synthetic", "flickr8k", "karpathy", "coco_captions", "imagefolder", "csv", "cifar", "hf"} <= set(FORMATS)
    assert {"sugarcrepe", "aro", "winoground", "valse"} <= set(FORMATS)  # caption selection (issue 12)
    assert all(m.spec.format in FORMATS for _, m in D.DATASETS.items())



def test_hf_captions_with_local_image_files(tmp_path: Path) -> None:
    """coco-karpathy style: hub rows hold captions and file names; pixels come from a local folder."""
    import datasets

    rows = {"filepath": ["val2014", "val2014", "val2014"],
            "filename": ["COCO_val2014_1.jpg", "COCO_val2014_2.jpg", "COCO_val2014_3.jpg"],
            "sentences": [["one a", "one b"], ["two a"], ["three a"]]}
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "coco-hf"))
    for n in rows["filename"]:
        write_jpeg(tmp_path / "coco" / "val2014" / n)
    d = load("coco-hf", "test", tmp_path)
    assert d.captions == ["one a", "one b", "two a", "three a"] and d.caption_to_image == [0, 0, 1, 2]
    assert d.images.paths[1] == tmp_path / "coco" / "val2014" / "COCO_val2014_2.jpg"
    assert d.info["hf_id"] == "yerevann/coco-karpathy" and d.info["dropped_missing_images"] == 0
    (tmp_path / "coco" / "val2014" / "COCO_val2014_3.jpg").unlink()
    with pytest.raises(DatasetError, match=r"coco-hf/test: 1 of 3 images are missing .*val2014/COCO_val2014_3\.jpg"):
        load("coco-hf", "test", tmp_path)
