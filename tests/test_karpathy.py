"""COCO / Flickr30k Karpathy-split loaders: tiny fixtures in each on-disk format."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from harness.datasets import DATASETS, karpathy
from harness.datasets.base import DatasetError, DatasetRequest, TaskKind
from tests.imagefiles import write_jpeg

# (filepath, filename, karpathy split, number of sentences)
COCO_IMAGES = [
    ("val2014", "COCO_val2014_000000000001.jpg", "test", 5),
    ("val2014", "COCO_val2014_000000000002.jpg", "test", 6),   # 6 captions
    ("val2014", "COCO_val2014_000000000003.jpg", "val", 5),
    ("train2014", "COCO_train2014_000000000004.jpg", "train", 5),
    ("val2014", "COCO_val2014_000000000005.jpg", "restval", 7),  # restval -> train, 7 captions
    ("val2014", "COCO_val2014_000000000006.jpg", "test", 5),
    ("train2014", "COCO_train2014_000000000007.jpg", "train", 5),
]


def cap(filename: str, n: int) -> str:
    return f"{Path(filename).stem} caption {n}"


def req(split: str, root: Path | None, **kw) -> DatasetRequest:
    return DatasetRequest(split=split, task=TaskKind.RETRIEVAL, data_root=None if root is None else str(root), **kw)


def quiet(fn, request):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(request)


def recording(fn, request):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        data = fn(request)
    return data, "\n".join(str(w.message) for w in rec)


def touch(path: Path) -> None:
    write_jpeg(path)  # a valid tiny JPEG: loads check each file's signature and end marker


def karpathy_json(images) -> dict:
    return {"dataset": "x", "images": [
        {"filepath": fp, "filename": fn, "split": sp, "imgid": i,
         "sentences": [{"raw": cap(fn, n), "tokens": []} for n in range(k)]}
        for i, (fp, fn, sp, k) in enumerate(images)]}


def make_coco(root: Path, *, missing: tuple[str, ...] = ()) -> Path:
    for fp, fn, _, _ in COCO_IMAGES:
        if fn not in missing:
            touch(root / fp / fn)
    (root / "dataset_coco.json").write_text(json.dumps(karpathy_json(COCO_IMAGES)))
    return root


def expected(names_caps: list[tuple[str, int]]) -> tuple[list[str], list[int]]:
    caps = [cap(fn, n) for fn, k in names_caps for n in range(k)]
    gt = [i for i, (_, k) in enumerate(names_caps) for _ in range(k)]
    return caps, gt


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    make_coco(tmp_path / "coco")
    return tmp_path


# --- COCO, Karpathy JSON ---

def test_coco_test_counts_and_mapping(coco_root: Path) -> None:
    d = quiet(karpathy.load_coco, req("test", coco_root))
    assert d.name == "coco" and d.split == "test"
    names = ["COCO_val2014_000000000001.jpg", "COCO_val2014_000000000002.jpg", "COCO_val2014_000000000006.jpg"]
    assert [p.name for p in d.images.paths] == names
    assert all(p.parent == coco_root / "coco" / "val2014" for p in d.images.paths)
    caps, gt = expected([(names[0], 5), (names[1], 6), (names[2], 5)])
    assert d.captions == caps and d.caption_to_image == gt
    assert len(d.captions) == 16 and d.caption_to_image.count(1) == 6   # image with 6 captions kept whole
    assert d.info["format"] == "karpathy" and d.info["dropped_missing_images"] == 0
    assert d.info["karpathy_split_sizes"] == {"test": 3, "val": 1, "train": 2, "restval": 1}


def test_coco_restval_maps_into_train(coco_root: Path) -> None:
    d = quiet(karpathy.load_coco, req("train", coco_root))
    names = [(p.parent.name, p.name) for p in d.images.paths]
    assert names == [("train2014", "COCO_train2014_000000000004.jpg"), ("val2014", "COCO_val2014_000000000005.jpg"),
                     ("train2014", "COCO_train2014_000000000007.jpg")]
    caps, gt = expected([(n, k) for n, k in [(names[0][1], 5), (names[1][1], 7), (names[2][1], 5)]])
    assert d.captions == caps and d.caption_to_image == gt
    assert quiet(karpathy.load_coco, req("restval", coco_root)).captions == caps  # alias
    v = quiet(karpathy.load_coco, req("val", coco_root))
    assert len(v.images) == 1 and len(v.captions) == 5
    assert quiet(karpathy.load_coco, req("dev", coco_root)).captions == v.captions


@pytest.mark.parametrize("split", ["test", "val"])
def test_coco_missing_images_fail_for_eval_splits(tmp_path: Path, split: str) -> None:
    make_coco(tmp_path / "coco", missing=("COCO_val2014_000000000002.jpg", "COCO_val2014_000000000006.jpg",
                                          "COCO_val2014_000000000003.jpg"))
    with pytest.raises(DatasetError) as e:
        quiet(karpathy.load_coco, req(split, tmp_path))
    msg = str(e.value)
    assert ("2 of 3 images are missing" if split == "test" else "1 of 1 images are missing") in msg
    assert str(tmp_path / "coco" / "val2014") in msg and "must be complete" in msg


def test_coco_missing_images_dropped_and_counted_for_train(tmp_path: Path) -> None:
    make_coco(tmp_path / "coco", missing=("COCO_val2014_000000000005.jpg",))
    d, text = recording(karpathy.load_coco, req("train", tmp_path))
    assert "1 of 3 images are missing" in text and "COCO_val2014_000000000005.jpg" in text
    assert d.info["dropped_missing_images"] == 1
    assert [p.name for p in d.images.paths] == ["COCO_train2014_000000000004.jpg", "COCO_train2014_000000000007.jpg"]
    assert d.caption_to_image == [0] * 5 + [1] * 5


def test_coco_2017_image_layout(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    (root).mkdir()
    (root / "dataset_coco.json").write_text(json.dumps(karpathy_json(COCO_IMAGES)))
    for _, fn, sp, _ in COCO_IMAGES:
        if sp == "test":
            touch(root / "val2017" / f"{int(fn[-10:-4]):012d}.jpg")
    d = quiet(karpathy.load_coco, req("test", tmp_path))
    assert [p.name for p in d.images.paths] == ["000000000001.jpg", "000000000002.jpg", "000000000006.jpg"]


def test_limit_is_deterministic_and_recorded(coco_root: Path) -> None:
    full = quiet(karpathy.load_coco, req("test", coco_root))
    a = quiet(karpathy.load_coco, req("test", coco_root, limit=2, seed=5))
    b = quiet(karpathy.load_coco, req("test", coco_root, limit=2, seed=5))
    assert [p.name for p in a.images.paths] == [p.name for p in b.images.paths]
    assert a.captions == b.captions and a.fingerprint == b.fingerprint != full.fingerprint
    assert len(a.images) == 2 and a.info["subset"] == {"limit": 2, "seed": 5}
    for c, i in zip(a.captions, a.caption_to_image):
        assert c.startswith(a.images.paths[i].stem + " ")
    picks = {tuple(p.name for p in quiet(karpathy.load_coco, req("test", coco_root, limit=1, seed=s)).images.paths)
             for s in range(10)}
    assert len(picks) > 1
    with pytest.raises(DatasetError):
        quiet(karpathy.load_coco, req("test", coco_root, limit=0))


def test_fingerprint_follows_annotations(coco_root: Path) -> None:
    before = quiet(karpathy.load_coco, req("test", coco_root)).fingerprint
    assert quiet(karpathy.load_coco, req("test", coco_root)).fingerprint == before
    path = coco_root / "coco" / "dataset_coco.json"
    obj = json.loads(path.read_text())
    obj["images"][0]["sentences"][0]["raw"] = "changed"
    path.write_text(json.dumps(obj))
    assert quiet(karpathy.load_coco, req("test", coco_root)).fingerprint != before


def test_unknown_split_and_task(coco_root: Path) -> None:
    with pytest.raises(DatasetError, match=r"coco has no split 'extra'; splits: train, val, test"):
        quiet(karpathy.load_coco, req("extra", coco_root))
    with pytest.raises(DatasetError, match="no split 'extra'"):
        DATASETS.get("coco").load(req("extra", coco_root))
    with pytest.raises(DatasetError, match="retrieval"):
        karpathy.load_coco(DatasetRequest("test", TaskKind.ZEROSHOT, data_root=str(coco_root)))


def test_malformed_json_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    root.mkdir()
    path = root / "dataset_coco.json"
    path.write_text('{"images": [ {"filename": "a.jpg",, } ]}')
    with pytest.raises(DatasetError) as e:
        quiet(karpathy.load_coco, req("test", tmp_path))
    assert str(path) in str(e.value) and "malformed JSON at line 1" in str(e.value)
    path.write_text('{"something": 1}')
    with pytest.raises(DatasetError, match="neither a Karpathy split JSON"):
        quiet(karpathy.load_coco, req("test", tmp_path))


def test_bad_entries_are_skipped_counted_and_warned(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco")
    obj = karpathy_json(COCO_IMAGES)
    obj["images"].insert(1, {"split": "test"})                     # entry 1: no filename
    obj["images"][0]["sentences"].append({"raw": "   "})           # entry 0: empty caption
    obj["images"].append({"filepath": "val2014", "filename": "x.jpg", "split": "holdout", "sentences": []})
    (root / "dataset_coco.json").write_text(json.dumps(obj))
    d, text = recording(karpathy.load_coco, req("test", tmp_path))
    assert len(d.images) == 3 and len(d.captions) == 16
    assert d.info["dropped_malformed_entries"] == 1 and d.info["dropped_empty_captions_json"] == 1
    assert d.info["dropped_unknown_split_entries"] == 1
    path = str(root / "dataset_coco.json")
    assert f"1 malformed entr(ies) skipped (no image name or split) in {path}, entr(ies) 1" in text
    assert "empty caption(s) skipped" in text and "entr(ies) 0" in text and "unknown split" in text


def test_not_found_names_every_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetError) as e:
        quiet(karpathy.load_coco, req("test", tmp_path))
    msg = str(e.value)
    assert str(tmp_path / "coco" / "dataset_coco.json") in msg
    assert str(tmp_path / "annotations" / "coco_karpathy_test.json") in msg
    assert "--data-root" in msg and "VLBENCH_DATA" in msg
    monkeypatch.delenv("VLBENCH_DATA", raising=False)
    with pytest.raises(DatasetError, match="VLBENCH_DATA unset"):
        quiet(karpathy.load_coco, req("test", None))
    monkeypatch.setenv("VLBENCH_DATA", str(tmp_path))
    make_coco(tmp_path / "coco")
    assert len(quiet(karpathy.load_coco, req("test", None)).images) == 3


# --- COCO, LAVIS-style per-split JSON ---

def make_lavis(root: Path, name: str = "coco_karpathy_{split}.json", ann_dir: str = "annotations") -> Path:
    test = [{"image": f"val2014/{fn}", "caption": [cap(fn, n) for n in range(k)], "image_id": fn}
            for fp, fn, sp, k in COCO_IMAGES if sp == "test"]
    # train files hold one caption per entry, interleaved here to check grouping by image
    train = [{"image": f"{fp}/{fn}", "caption": cap(fn, n), "image_id": fn}
             for n in range(7) for fp, fn, sp, k in COCO_IMAGES if sp in ("train", "restval") and n < k]
    (root / ann_dir).mkdir(parents=True, exist_ok=True)
    (root / ann_dir / name.format(split="test")).write_text(json.dumps(test))
    (root / ann_dir / name.format(split="train")).write_text(json.dumps(train))
    for fp, fn, _, _ in COCO_IMAGES:
        touch(root / fp / fn)
    return root


@pytest.mark.parametrize("name", ["coco_karpathy_{split}.json", "coco_{split}_karpathy.json"])
def test_lavis_per_split_files(tmp_path: Path, name: str) -> None:
    make_lavis(tmp_path / "coco", name)
    d = quiet(karpathy.load_coco, req("test", tmp_path))
    assert d.info["format"] == "per_split"
    names = ["COCO_val2014_000000000001.jpg", "COCO_val2014_000000000002.jpg", "COCO_val2014_000000000006.jpg"]
    assert [p.name for p in d.images.paths] == names
    caps, gt = expected([(names[0], 5), (names[1], 6), (names[2], 5)])
    assert d.captions == caps and d.caption_to_image == gt
    t = quiet(karpathy.load_coco, req("train", tmp_path))
    tn = ["COCO_train2014_000000000004.jpg", "COCO_val2014_000000000005.jpg", "COCO_train2014_000000000007.jpg"]
    assert [p.name for p in t.images.paths] == tn
    caps, gt = expected([(tn[0], 5), (tn[1], 7), (tn[2], 5)])
    assert sorted(zip(t.caption_to_image, t.captions)) == sorted(zip(gt, caps))
    with pytest.raises(DatasetError, match="no annotations found for split 'val'"):
        quiet(karpathy.load_coco, req("val", tmp_path))


def test_lavis_missing_image_fails_for_test(tmp_path: Path) -> None:
    root = make_lavis(tmp_path / "coco")
    (root / "val2014" / "COCO_val2014_000000000001.jpg").unlink()
    with pytest.raises(DatasetError, match="1 of 3 images are missing"):
        quiet(karpathy.load_coco, req("test", tmp_path))


# --- Flickr30k ---

F30K = [("1000.jpg", "train"), ("1001.jpg", "test"), ("1002.jpg", "val"), ("1003.jpg", "test"), ("1004.jpg", "train")]


def make_f30k(root: Path, *, token: bool, image_dir: str = "flickr30k-images", missing: tuple[str, ...] = ()) -> Path:
    images = [("", fn, sp, 5) for fn, sp in F30K]
    obj = karpathy_json(images)
    for entry in obj["images"]:
        del entry["filepath"]  # dataset_flickr30k.json has none
        if token:
            entry["sentences"] = [{"raw": "json sentence, ignored when a token file exists"}]
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_flickr30k.json").write_text(json.dumps(obj))
    if token:
        lines = [f"{fn}#{n}\t{cap(fn, n)}" for fn, _ in reversed(F30K) for n in reversed(range(5))]
        lines.insert(3, "no tab here")                 # line 4: malformed
        lines.append("9999.jpg#0\tan image in no split")
        (root / "results_20130124.token").write_text("\n".join(lines) + "\n")
    for fn, _ in F30K:
        if fn not in missing:
            touch(root / image_dir / fn)
    return root


@pytest.mark.parametrize("image_dir", ["flickr30k-images", "images"])
def test_flickr30k_karpathy_json(tmp_path: Path, image_dir: str) -> None:
    make_f30k(tmp_path / "flickr30k", token=False, image_dir=image_dir)
    d = quiet(karpathy.load_flickr30k, req("test", tmp_path))
    assert d.name == "flickr30k" and [p.name for p in d.images.paths] == ["1001.jpg", "1003.jpg"]
    assert d.images.paths[0].parent.name == image_dir
    caps, gt = expected([("1001.jpg", 5), ("1003.jpg", 5)])
    assert d.captions == caps and d.caption_to_image == gt
    assert d.info["captions_from"] == "dataset_flickr30k.json"
    assert len(quiet(karpathy.load_flickr30k, req("val", tmp_path)).images) == 1
    assert len(quiet(karpathy.load_flickr30k, req("train", tmp_path)).captions) == 10


def test_flickr30k_token_file_with_karpathy_splits(tmp_path: Path) -> None:
    make_f30k(tmp_path / "flickr30k", token=True)
    d, text = recording(karpathy.load_flickr30k, req("test", tmp_path))
    assert [p.name for p in d.images.paths] == ["1001.jpg", "1003.jpg"]
    caps, gt = expected([("1001.jpg", 5), ("1003.jpg", 5)])
    assert d.captions == caps and d.caption_to_image == gt     # token order (#n) restored
    assert d.info["captions_from"] == "results_20130124.token" and d.info["dropped_malformed_lines"] == 1
    assert set(d.info["sha256"]) == {"dataset_flickr30k.json", "results_20130124.token"}
    assert "flickr30k: 1 blank or malformed" in text and "line(s) 4" in text and "flickr8k" not in text
    t = quiet(karpathy.load_flickr30k, req("train", tmp_path))
    caps, gt = expected([("1000.jpg", 5), ("1004.jpg", 5)])
    assert t.captions == caps and t.caption_to_image == gt


def test_flickr30k_missing_test_image_fails(tmp_path: Path) -> None:
    make_f30k(tmp_path / "flickr30k", token=True, missing=("1003.jpg",))
    with pytest.raises(DatasetError) as e:
        quiet(karpathy.load_flickr30k, req("test", tmp_path))
    assert "1 of 2 images are missing" in str(e.value) and "1003.jpg" in str(e.value)
    assert str(tmp_path / "flickr30k" / "flickr30k-images") in str(e.value)
    assert len(quiet(karpathy.load_flickr30k, req("train", tmp_path)).images) == 2


def test_flickr30k_lavis_per_split(tmp_path: Path) -> None:
    root = make_f30k(tmp_path / "flickr30k", token=False)
    (root / "dataset_flickr30k.json").unlink()
    rows = [{"image": f"flickr30k-images/{fn}", "caption": [cap(fn, n) for n in range(5)]}
            for fn, sp in F30K if sp == "test"]
    (root / "flickr30k_test.json").write_text(json.dumps(rows))
    d = quiet(karpathy.load_flickr30k, req("test", tmp_path))
    assert [p.name for p in d.images.paths] == ["1001.jpg", "1003.jpg"] and len(d.captions) == 10


def test_meta_registered_and_describe(coco_root: Path) -> None:
    for name, cite in (("coco", "Lin"), ("flickr30k", "Young")):
        m = DATASETS.get(name)
        assert m.splits == ("train", "val", "test") and m.default_split == "test"
        assert m.tasks == (TaskKind.RETRIEVAL, TaskKind.CAPTIONING) and cite in m.citation and "Karpathy" in m.citation
    assert "CC BY 4.0" in DATASETS.get("coco").license
    (coco_root / "coco" / "val2014" / "COCO_val2014_000000000006.jpg").unlink()
    from harness.datasets.describe import describe

    report = describe(DATASETS.get("coco"), "test", str(coco_root))
    assert report["usable"] is False and "1 of 3 images are missing" in report["error"]
    assert "COCO_val2014_000000000006.jpg" in report["error"]
    report = describe(DATASETS.get("coco"), "train", str(coco_root))
    assert report["usable"] is True and report["retrieval.images"] == 3 and report["retrieval.captions"] == 17
    assert report["retrieval.count_mismatch"] == ["3 images (expected 113287)"]


def test_flickr30k_official_token_with_an_id_list(tmp_path: Path) -> None:
    """The 1k test split from the official token file and a list of Karpathy test ids."""
    root = make_f30k(tmp_path / "flickr30k", token=True)
    (root / "dataset_flickr30k.json").unlink()
    with pytest.raises(DatasetError, match=r"no annotations found for split 'test'"):
        quiet(karpathy.load_flickr30k, req("test", tmp_path))
    (root / "flickr30k_karpathy_test.txt").write_text("1003.jpg\n1001.jpg\n1003.jpg\n")
    d, text = recording(karpathy.load_flickr30k, req("test", tmp_path))
    assert [p.name for p in d.images.paths] == ["1003.jpg", "1001.jpg"]
    caps, gt = expected([("1003.jpg", 5), ("1001.jpg", 5)])
    assert d.captions == caps and d.caption_to_image == gt
    assert d.info["format"] == "id_list" and d.info["dropped_duplicate_entries"] == 1
    assert "1 repeated image name(s)" in text and "flickr30k_karpathy_test.txt" in text
    assert set(d.info["sha256"]) == {"flickr30k_karpathy_test.txt", "results_20130124.token"}
    (root / "results_20130124.token").unlink()
    with pytest.raises(DatasetError, match=r"lists image names, so the official results_20130124.token is needed"):
        quiet(karpathy.load_flickr30k, req("test", tmp_path))
