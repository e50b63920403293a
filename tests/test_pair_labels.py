"""The image + text -> label view (ImageTextLabelData): validation naming the split and the
item's file and line, counts, seeded subsets that keep consistency groups whole, and the
helpers the task calls (labels the train split never saw, classes too small to hold out)."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import pytest

from harness.datasets.base import DatasetError, ImageSet
from harness.datasets.pair_labels import (
    PAIR_MODE_NOTE,
    ImageTextLabelData,
    check_holdout,
    check_labels,
    group_subset,
    limit_pairs,
)


def data(labels, classnames=("no", "yes"), multilabel=False, split="train", **kw) -> ImageTextLabelData:
    n = len(labels)
    kw.setdefault("origins", [f"{split}.jsonl:{i + 1}" for i in range(n)])
    return ImageTextLabelData(name="toy", split=split, images=ImageSet([Path(f"{i}.png") for i in range(n)]),
                              texts=[f"text {i}" for i in range(n)], labels=list(labels),
                              classnames=list(classnames), multilabel=multilabel, fingerprint="fp", **kw)


def test_counts_kind_and_class_counts() -> None:
    d = data([0, 1, 1, 0, 1])
    assert d.kind == "binary" and not d.is_pair and len(d) == 5
    assert d.class_counts() == [2, 3]
    assert d.counts() == {"items": 5, "images": 5, "classes": 2, "labels_used": 2}
    m = data([[0, 2], [1], [2]], classnames=("a", "b", "c", "d"), multilabel=True)
    assert m.kind == "multilabel" and m.class_counts() == [1, 1, 2, 0]
    assert m.label_sets() == [(0, 2), (1,), (2,)] and m.counts()["labels_used"] == 3
    assert data([0, 2], classnames=("a", "b", "c")).kind == "multiclass"


def test_pairs_record_how_a_pair_is_read() -> None:
    right = ImageSet([Path("r0.png"), Path("r1.png")])
    d = data([0, 1], images_right=right, groups=["s1", "s1"])
    assert d.is_pair and d.info["pair_mode"] == PAIR_MODE_NOTE
    assert d.counts() == {"items": 2, "images": 2, "classes": 2, "labels_used": 2, "images_right": 2, "groups": 1}
    sub = d.restrict([1])
    assert sub.images_right.paths == [Path("r1.png")] and sub.groups == ["s1"] and sub.origins == ["train.jsonl:2"]
    assert sub.fingerprint != d.fingerprint


@pytest.mark.parametrize("kw, message", [
    (dict(labels=[0, 2]), r"toy/train: item 1 \(train.jsonl:2\): label 2 is not a class index in 0..1"),
    (dict(labels=[0, True]), r"item 1 \(train.jsonl:2\): label True is not a class index"),
    (dict(labels=[0, "1"]), r"label '1' is not a class index"),
    (dict(labels=[[0], []], multilabel=True), r"item 1 \(train.jsonl:2\): a multi-label item has no labels"),
    (dict(labels=[[0], 1], multilabel=True), r"needs a list of class indices, got 1"),
    (dict(labels=[[0, 0]], multilabel=True), r"repeat a class"),
    (dict(labels=[], origins=[]), r"toy/train: the split holds no items"),
    (dict(labels=[0], classnames=("a", "a")), r"without repeats"),
    (dict(labels=[0, 1], groups=["g"]), r"2 texts but 1 groups"),
])
def test_bad_items_name_the_split_and_line(kw, message) -> None:
    with pytest.raises(DatasetError, match=message):
        data(**kw)


def test_limit_is_seeded_recorded_and_keeps_groups_whole() -> None:
    d = data([i % 2 for i in range(10)])
    a, b = limit_pairs(d, 4, seed=1), limit_pairs(data([i % 2 for i in range(10)]), 4, seed=1)
    assert a.texts == b.texts and len(a) == 4 and a.info["subset"] == {"limit": 4, "seed": 1, "unit": "items"}
    assert limit_pairs(data([0, 1]), 5, 0).info["subset"]["limit"] == 5  # nothing dropped, still recorded
    groups = ["a"] * 6 + ["b"] * 6 + ["c"] * 6
    g = limit_pairs(data([i % 2 for i in range(18)], groups=groups), 12, seed=0)
    assert len(g) == 12 and all(g.groups.count(x) in (0, 6) for x in "abc")
    assert g.info["subset"]["unit"] == "groups"
    assert group_subset(["a", "a", "b"], 1, seed=0) in ([0, 1], [2])  # at least one whole group
    with pytest.raises(DatasetError, match="--limit must be positive"):
        limit_pairs(d, 0, 0)


def test_check_labels_warns_and_counts_unseen_classes() -> None:
    names = ("cat", "dog", "eel")
    train, test = data([0, 1, 0, 1], names), data([0, 2, 2, 1], names, split="test")
    with pytest.warns(UserWarning, match=r"toy/test: 2 item\(s\) carry label\(s\) the train split never has "
                                         r"\('eel'\), e.g. test.jsonl:2, test.jsonl:3"):
        got = check_labels(train, test)
    assert got == {"unseen_classes": ["eel"], "unseen_items": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_labels(train, data([1, 0], names, split="test")) == {"unseen_classes": [], "unseen_items": 0}
    with pytest.raises(DatasetError, match="different classes"):
        check_labels(train, data([0], ("cat", "dog"), split="test"))


def test_check_holdout_names_the_small_class() -> None:
    train = data([0, 0, 1, 2, 2], ("cat", "dog", "eel", "fox"))
    with pytest.raises(DatasetError, match=r"toy/train: class 'dog' has 1 item\(s\) \(train.jsonl:3\); holding "
                                           r"part of train out .* at least 2 per class"):
        check_holdout(train)
    check_holdout(data([0, 0, 1, 1], ("cat", "dog", "eel")))  # 'eel' has none: check_labels' business
    with pytest.raises(DatasetError, match="class 'eel' has 0"):
        check_holdout(data([0, 0, 1, 1], ("cat", "dog", "eel")), ignore_empty=False)
    grouped = data([0, 0, 1, 1, 1], ("cat", "dog"), holdout_groups=["a", "a", "b", "c", "c"])
    with pytest.raises(DatasetError, match=r"class 'cat' has 2 item\(s\) in 1 group\(s\) that stay whole "
                                           r"\(train.jsonl:1, train.jsonl:2\)"):
        check_holdout(grouped)
    multi = data([[0, 1], [0], [1]], ("a", "b"), multilabel=True)
    check_holdout(multi)
    with pytest.raises(DatasetError, match="class 'a' has 2"):
        check_holdout(multi, min_per_class=3)


def test_distinct_images_and_texts() -> None:
    d = data([0, 1, 0, 1], images_right=ImageSet([Path("r.png")] * 4))
    d.images = ImageSet([Path("a.png"), Path("b.png"), Path("a.png"), Path("c.png")])
    d.texts = ["s", "t", "s", "s"]
    images, of_item = d.distinct_images()
    assert images.paths == [Path("a.png"), Path("b.png"), Path("c.png")] and of_item == [0, 1, 0, 2]
    right, of_right = d.distinct_images(right=True)
    assert right.paths == [Path("r.png")] and of_right == [0, 0, 0, 0]
    assert d.distinct_texts() == (["s", "t"], [0, 1, 0, 0])
    with pytest.raises(DatasetError, match="no right image"):
        data([0]).distinct_images(right=True)


def test_a_text_that_is_not_a_string_is_named() -> None:
    with pytest.raises(DatasetError, match=r"toy/train: item 1 \(train.jsonl:2\) has a text that is not a string"):
        ImageTextLabelData(name="toy", split="train", images=ImageSet([Path("a"), Path("b")]), texts=["ok", 3],
                           labels=[0, 1], classnames=["no", "yes"], multilabel=False, fingerprint="fp",
                           origins=["train.jsonl:1", "train.jsonl:2"])


def test_grouped_holdout_keeps_groups_whole_and_stratifies() -> None:
    from harness.datasets.pair_labels import grouped_holdout

    groups = [f"g{i // 4}" for i in range(40)]  # 10 groups of 4, each one class
    d = data([(i // 4) % 2 for i in range(40)], holdout_groups=groups)
    fit, held = grouped_holdout(d, 0.2, seed=0)
    assert sorted(fit + held) == list(range(40)) and not set(fit) & set(held)
    assert {groups[i] for i in held}.isdisjoint({groups[i] for i in fit})  # no group straddles the cut
    assert Counter(d.labels[i] for i in held) == {0: 4, 1: 4}  # round(0.2 * 20) = 4 per class
    assert grouped_holdout(d, 0.2, seed=0) == (fit, held) and grouped_holdout(d, 0.2, seed=1) != (fit, held)
    one_group = data([0, 0, 1, 1], holdout_groups=["a", "a", "b", "b"])
    assert grouped_holdout(one_group, 0.5, seed=0) is None  # a class in a single group: nothing to hold out
    plain = data([0, 0, 0, 1, 1, 1])  # no groups: items alone
    fit, held = grouped_holdout(plain, 0.34, seed=0)
    assert len(held) == 2 and {plain.labels[i] for i in held} == {0, 1}
    multi = data([[0], [0, 1], [1], [0], [1], [0, 1]], multilabel=True)
    fit, held = grouped_holdout(multi, 0.3, seed=0)
    assert all(any(c in multi.labels[i] for i in held) and any(c in multi.labels[i] for i in fit) for c in (0, 1))
