"""The embedded synthetic dataset: determinism, counts, ground truth, hard negatives, caching."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter

import pytest

from harness.datasets import synthetic as S
from harness.datasets.base import (
    ClassificationData,
    DatasetError,
    DatasetRequest,
    RetrievalData,
    TaskKind,
)

COLOUR_WORDS = set(S.COLOURS)
SHAPE_WORDS = set(S.SHAPES)


def _load(cache, split="test", task=TaskKind.RETRIEVAL, **kw):
    return S.load(DatasetRequest(split=split, task=task, cache_dir=str(cache), **kw))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synth-cache")


@pytest.fixture(scope="module")
def test_ret(cache) -> RetrievalData:
    return _load(cache)


@pytest.fixture(scope="module")
def test_cls(cache) -> ClassificationData:
    return _load(cache, task=TaskKind.ZEROSHOT)


def _nearest_colour(rgb):
    return min(S.COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(S.COLOURS[c], rgb)))


# ---------------------------------------------------------------- determinism and caching

def test_generation_is_deterministic(test_ret, tmp_path):
    other = _load(tmp_path)
    a = (S.cache_root(tmp_path) / "test" / "annotations.json").read_bytes()
    b = (test_ret.images.paths[0].parent.parent / "annotations.json").read_bytes()
    assert a == b
    assert other.fingerprint == test_ret.fingerprint
    assert other.captions == test_ret.captions
    for i in range(0, len(other.images), 97):
        assert other.images.paths[i].read_bytes() == test_ret.images.paths[i].read_bytes()
    assert S.retrieval_annotations("val") == S.retrieval_annotations("val")


def test_cache_is_reused(cache, test_ret):
    ann = test_ret.images.paths[0].parent.parent / "annotations.json"
    before = ann.stat().st_mtime_ns
    again = _load(cache)
    assert ann.stat().st_mtime_ns == before
    assert again.fingerprint == test_ret.fingerprint


def test_half_generated_folder_is_regenerated(test_ret, tmp_path):
    src = test_ret.images.paths[0].parent.parent
    dst = S.cache_root(tmp_path) / "test"
    shutil.copytree(src, dst)
    original = (dst / "annotations.json").read_bytes()
    (dst / "annotations.json").unlink()           # as if killed before the last write
    (dst / "images" / "00010.png").unlink()
    data = _load(tmp_path)
    assert (dst / "annotations.json").read_bytes() == original
    assert (dst / "images" / "00010.png").read_bytes() == test_ret.images.paths[10].read_bytes()
    assert data.fingerprint == test_ret.fingerprint
    # a listed image gone (annotations present) also counts as incomplete
    (dst / "images" / "00020.png").unlink()
    _load(tmp_path)
    assert (dst / "images" / "00020.png").is_file()
    # a corrupt annotations file too
    (dst / "annotations.json").write_text("{not json")
    assert _load(tmp_path).fingerprint == test_ret.fingerprint


def test_cache_dir_defaults_to_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VLBENCH_CACHE", str(tmp_path))
    assert S.cache_root() == tmp_path / "synthetic" / f"v{S.GENERATOR_VERSION}-seed{S.DATASET_SEED}"


# ---------------------------------------------------------------- retrieval view

def test_retrieval_counts_and_ground_truth(test_ret):
    assert len(test_ret.images) == S.SPLIT_SIZES["test"] == 1000
    assert len(test_ret.captions) == 5 * len(test_ret.images)
    assert test_ret.caption_to_image == [i // 5 for i in range(len(test_ret.captions))]
    for i in range(0, len(test_ret.images), 50):
        assert test_ret.captions[5 * i:5 * i + 5] == S.captions(test_ret.info["scenes"][i])


def test_split_sizes_and_mix():
    for split, n in S.SPLIT_SIZES.items():
        ann = S.retrieval_annotations(split)
        assert len(ann["images"]) == n
        assert all(len(e["captions"]) == S.CAPTIONS_PER_IMAGE for e in ann["images"])
        kinds = Counter(e["scene"]["kind"] for e in ann["images"])
        assert set(kinds) == {"single", "count", "pair"}
        cls = S.classification_annotations(split)
        assert Counter(e["label"] for e in cls["images"]) == {k: S.CLASS_IMAGES_PER_CLASS[split]
                                                             for k in range(24)}


def test_captions_short_small_vocabulary_and_unique_in_eval_splits(test_ret):
    vocab = S.vocabulary()
    assert len(vocab) < 60
    for cap in test_ret.captions:
        words = re.findall(r"[a-z]+", cap)
        assert len(words) <= 16 and set(words) <= set(vocab)
    for split in ("val", "test"):  # no two images share a caption: retrieval is well posed
        caps = [c for e in S.retrieval_annotations(split)["images"] for c in e["captions"]]
        assert len(set(caps)) == len(caps)


def test_captions_match_the_pixels(test_ret):
    for i in range(0, len(test_ret.images), 37):
        im = test_ret.images.load(i)
        assert im.size == (S.CANVAS, S.CANVAS)
        for obj in test_ret.info["scenes"][i]["objects"]:
            assert _nearest_colour(im.getpixel((obj["x"], obj["y"]))) == obj["colour"]
            assert obj["colour"] in test_ret.captions[5 * i]
        scene = test_ret.info["scenes"][i]
        if scene["kind"] == "pair":
            a, b = scene["objects"]
            axis = "x" if scene["relation"] == "left of" else "y"
            assert a[axis] < b[axis]  # first object is left of / above the second


def test_splits_do_not_share_scenes():
    def keys(split):
        images = S.retrieval_annotations(split)["images"]
        return {json.dumps([e["scene"]["objects"], e["scene"]["bg"]]) for e in images}

    test, val, train = keys("test"), keys("val"), keys("train")
    assert not test & val and not test & train and not val & train


# ---------------------------------------------------------------- hard negatives

def _diff_words(a: str, b: str) -> set[str]:
    wa, wb = a.split(), b.split()
    assert len(wa) == len(wb)
    return {w for x, y in zip(wa, wb) if x != y for w in (x.strip(","), y.strip(","))}


def test_binding_swaps_exist_and_differ_only_in_colour(test_ret):
    scenes, per_image = test_ret.info["scenes"], test_ret.info["hard_negative_of"]
    two = [i for i, s in enumerate(scenes) if s["kind"] == "pair"]
    with_swap = [i for i in two if any(kind == "colour_swap" for _, kind in per_image[i])]
    assert len(with_swap) >= 0.2 * len(two)
    kinds = Counter(kind for *_, kind in test_ret.info["hard_negative_pairs"])
    assert kinds["colour_swap"] and kinds["shape_swap"] and kinds["relation_swap"] and kinds["count_swap"]
    for i, j, kind in test_ret.info["hard_negative_pairs"]:
        ci, cj = test_ret.captions[5 * i:5 * i + 5], test_ret.captions[5 * j:5 * j + 5]
        assert scenes[i]["family"] == scenes[j]["family"] and ci != cj
        if kind == "colour_swap":
            assert all(_diff_words(a, b) <= COLOUR_WORDS for a, b in zip(ci, cj))
        elif kind == "shape_swap":
            assert all(_diff_words(a, b) <= SHAPE_WORDS for a, b in zip(ci, cj))
        # same bag of colour and shape words: only binding / order tells them apart
        assert sorted(ci[0].split()) == sorted(cj[0].split()) or kind in ("relation_swap", "count_swap")


def test_binding_swap_images_differ_only_in_colour(test_ret):
    i, j, _ = next(p for p in test_ret.info["hard_negative_pairs"] if p[2] == "colour_swap")
    si, sj = test_ret.info["scenes"][i], test_ret.info["scenes"][j]
    assert [(o["x"], o["y"], o["r"], o["shape"]) for o in si["objects"]] == \
           [(o["x"], o["y"], o["r"], o["shape"]) for o in sj["objects"]]
    im_i, im_j = test_ret.images.load(i), test_ret.images.load(j)
    for oi, oj in zip(si["objects"], sj["objects"]):
        assert _nearest_colour(im_i.getpixel((oi["x"], oi["y"]))) == oi["colour"]
        assert _nearest_colour(im_j.getpixel((oj["x"], oj["y"]))) == oj["colour"] != oi["colour"]


# ---------------------------------------------------------------- --limit

def test_limit_subset_is_deterministic_and_seeded(cache, test_ret):
    a = _load(cache, limit=50, seed=1)
    b = _load(cache, limit=50, seed=1)
    c = _load(cache, limit=50, seed=2)
    assert len(a.images) == 50 and len(a.captions) == 250
    assert a.images.paths == b.images.paths and a.captions == b.captions and a.fingerprint == b.fingerprint
    assert a.images.paths != c.images.paths and a.fingerprint != c.fingerprint
    assert a.fingerprint != test_ret.fingerprint
    keep = a.info["subset"]["indices"]
    assert a.info["subset"]["limit"] == 50 and a.info["subset"]["seed"] == 1 and len(keep) == 50
    assert a.images.paths == [test_ret.images.paths[k] for k in keep]
    assert a.info["scenes"] == [test_ret.info["scenes"][k] for k in keep]
    for cap, img in zip(a.captions, a.caption_to_image):
        assert cap in test_ret.captions[5 * keep[img]:5 * keep[img] + 5]
    for i, j, _ in a.info["hard_negative_pairs"]:
        assert 0 <= i < j < 50


# ---------------------------------------------------------------- classification view

def test_classification_view(test_cls):
    assert len(test_cls.classnames) == 24 == len(set(test_cls.classnames))
    assert all(len(n.split()) == 2 and n.split()[0] in COLOUR_WORDS and n.split()[1] in SHAPE_WORDS
               for n in test_cls.classnames)
    assert all("{}" in t for t in test_cls.templates) and len(test_cls.templates) >= 5
    assert len(test_cls.images) == 24 * S.CLASS_IMAGES_PER_CLASS["test"]
    assert Counter(test_cls.labels) == {k: 20 for k in range(24)}
    for i in range(0, len(test_cls.images), 23):
        (obj,) = test_cls.info["scenes"][i]["objects"]
        colour, shape = test_cls.classnames[test_cls.labels[i]].split()
        assert (obj["colour"], obj["shape"]) == (colour, shape)
        assert _nearest_colour(test_cls.images.load(i).getpixel((obj["x"], obj["y"]))) == colour


def test_classification_limit(cache, test_cls):
    sub = _load(cache, task=TaskKind.ZEROSHOT, limit=30, seed=3)
    keep = sub.info["subset"]["indices"]
    assert len(sub.images) == len(sub.labels) == 30
    assert sub.labels == [test_cls.labels[k] for k in keep]
    assert sub.fingerprint != test_cls.fingerprint


# ---------------------------------------------------------------- API

def test_meta_and_errors(cache):
    from harness.datasets import DATASETS

    META = DATASETS.get("synth")
    assert META.name == "synthetic" and META.offline and "synth" in META.aliases
    assert META.splits == ("train", "val", "test") and META.default_split == "test"
    # the issue-12 views join retrieval and zero-shot (caption_selection here; others may add theirs)
    assert {TaskKind.RETRIEVAL, TaskKind.ZEROSHOT, TaskKind.CAPTION_SELECTION} <= set(META.tasks)
    with pytest.raises(DatasetError, match="no split"):
        META.load(DatasetRequest(split="dev", task=TaskKind.RETRIEVAL, cache_dir=str(cache)))
    with pytest.raises(DatasetError, match="no split"):
        S.load(DatasetRequest(split="dev", task=TaskKind.RETRIEVAL, cache_dir=str(cache)))


def test_iter_training_pairs(cache, test_ret):
    pairs = list(S.iter_training_pairs("test", cache_dir=str(cache)))
    assert len(pairs) == len(test_ret.captions)
    assert pairs[7] == (test_ret.images.paths[1], test_ret.captions[7])
