"""caption_selection: metrics against hand-computed and naive references, every model kind on the
same pairs, and each release loader on a fixture written in its published format."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from harness.datasets import DATASETS, DatasetNotFound, DatasetRequest, TaskKind
from harness.datasets.base import DatasetError
from harness.metrics import selection as CM
from harness.tasks import caption_selection as task
from harness.tasks.encode import EncodeOptions

OPTS = EncodeOptions(batch_size=4)
# fixtures are tiny: the manifest's count check warns about the real releases' sizes, as it should
pytestmark = pytest.mark.filterwarnings("ignore:.*per datasets_manifest.yaml:UserWarning")
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20)}


# ------------------------------------------------------------------ metrics

def test_selection_ties_and_macro_against_naive_reference():
    rng = random.Random(0)
    subsets, cats = ("a", "b", "c"), ["r0", "r1", "r2", "r3"]
    rows = []
    for _ in range(300):
        s = rng.randrange(3)
        scores = [rng.choice([0.1, 0.2, 0.3]) for _ in range(rng.choice([2, 5]))]  # many ties
        rows.append((s, rng.randrange(4) if s == 1 else -1, scores))
    correct = [int(CM.true_beats_foils(sc)) for _, _, sc in rows]
    naive = [int(all(sc[0] > f for f in sc[1:])) for _, _, sc in rows]
    assert correct == naive and 0 < sum(correct) < len(correct)
    spec = CM.SelectionSpec(subsets, pooled={"ac": ("a", "c")},
                            category_macro={"b": CM.CategoryMacro(exclude=("r3",), min_count=5)})
    got = CM.selection_metrics(correct, [r[0] for r in rows], [r[1] for r in rows], spec, cats)
    by = {s: [c for (k, _, _), c in zip(rows, correct) if k == i] for i, s in enumerate(subsets)}
    per_cat = {}
    for (k, cat, _), c in zip(rows, correct):
        if k == 1:
            per_cat.setdefault(cats[cat], []).append(c)
    macro_b = 100 * np.mean([np.mean(v) for name, v in per_cat.items() if name != "r3" and len(v) >= 5])
    assert got["acc_a"] == pytest.approx(100 * np.mean(by["a"]))
    assert got["acc_b_micro"] == pytest.approx(100 * np.mean(by["b"]))
    assert got["acc_b"] == got["acc_b_macro"] == pytest.approx(macro_b)
    assert got["acc_ac"] == pytest.approx(100 * np.mean(by["a"] + by["c"]))
    assert got["acc"] == pytest.approx(np.mean([got["acc_a"], macro_b, got["acc_c"]]))


def test_winoground_scores_match_the_paper_definitions():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 3, size=(200, 2, 2)).astype(float)  # ties everywhere
    out = CM.winoground_outcomes(s)
    # Thrush et al.: c{caption}_i{image}; text: each image prefers its caption; image: each caption its image
    for g, (text, image, group) in enumerate(zip(out["text_score"], out["image_score"], out["group_score"])):
        c0_i0, c1_i0, c0_i1, c1_i1 = s[g, 0, 0], s[g, 0, 1], s[g, 1, 0], s[g, 1, 1]
        assert text == (c0_i0 > c1_i0 and c1_i1 > c0_i1)
        assert image == (c0_i0 > c0_i1 and c1_i1 > c1_i0)
        assert group == (text and image)
    m = CM.group_metrics(out["text_score"], out["image_score"], out["group_score"])
    assert m["group_score"] <= min(m["text_score"], m["image_score"])


# ------------------------------------------------------------------ colour-world models

def mean_rgb(image):  # module level: picklable transform
    return torch.tensor(np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(0) / 255.0)


def word_colour(text: str):
    for word in text.split():
        if word in COLOURS:
            return torch.tensor(COLOURS[word], dtype=torch.float32) / 255.0
    return torch.ones(3) / 3


class ColourDual:
    """Image: its mean colour; text: the colour it names; cosine picks the caption naming the colour."""

    name, embed_dim = "colour-dual", 3

    def image_transform(self):
        return mean_rgb

    def tokenize(self, texts):
        return torch.stack([word_colour(t) for t in texts])

    def encode_images(self, pixels):
        return torch.nn.functional.normalize(pixels, dim=1)

    def encode_texts(self, tokens):
        return torch.nn.functional.normalize(tokens, dim=1)


class ColourCross:
    """The same score, as a plain cross-encoder (pixels and texts of aligned pairs)."""

    name = "colour-cross"

    def image_transform(self):
        return mean_rgb

    def score_pairs(self, pixels, texts):
        img = torch.nn.functional.normalize(pixels, dim=1)
        return (img * torch.nn.functional.normalize(torch.stack([word_colour(t) for t in texts]), dim=1)).sum(1)


class ColourBoth(ColourDual, ColourCross):
    """BLIP-like: both a dual and a cross encoder; its cross score is inverted so the two rows differ."""

    name = "colour-both"

    def score_pairs(self, pixels, texts):
        return -ColourCross.score_pairs(self, pixels, texts)


def _image(path, colour, size=(16, 16), right=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", size, COLOURS[colour])
    if right:  # right half another colour (ARO crops must keep only their box)
        im.paste(COLOURS[right], (size[0] // 2, 0, size[0], size[1]))
    im.save(path)
    return path


# ------------------------------------------------------------------ fixtures in the published formats

def _sugarcrepe(root):
    coco = root / "coco" / "val2017"
    for k, c in enumerate(COLOURS):
        _image(coco / f"{k:012d}.jpg", c)
    folder = root / "sugarcrepe"
    folder.mkdir(parents=True)
    names = list(COLOURS)
    for part in ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj"):
        # replace_att's foils name the right colour: the model gets that part wrong
        entries = {str(k): {"filename": f"{k:012d}.jpg", "caption": f"a {c} square",
                            "negative_caption": f"a {names[(k + 1) % 4]} square" if part != "replace_att"
                            else f"a {c} shape"} for k, c in enumerate(names)}
        (folder / f"{part}.json").write_text(json.dumps(entries))
    return root


def test_sugarcrepe_loader_and_every_model_kind(tmp_path):
    root = _sugarcrepe(tmp_path)
    meta = DATASETS.get("sugarcrepe")
    data = meta.load(DatasetRequest("test", TaskKind.CAPTION_SELECTION, data_root=str(root)))
    assert len(data.items) == 28 and len(data.images) == 4 and data.items[0].captions == ("a red square", "a green square")
    assert set(data.info["sha256"]) >= {"add_att.json", "swap_obj.json"}
    dual = task.evaluate(ColourDual(), data, OPTS)
    cross = task.evaluate(ColourCross(), data, OPTS)
    assert dual.metrics["acc_add_att"] == 100.0 and dual.metrics["acc_replace_att"] == 0.0  # ties: wrong
    assert dual.metrics["acc"] == pytest.approx(600 / 7)
    assert cross.metrics == pytest.approx(dual.metrics) and cross.per_query["cs_correct"] == dual.per_query["cs_correct"]
    itm, itc = task.evaluate(ColourBoth(), data, OPTS), task.evaluate(ColourBoth(), data, OPTS, use_itc=True)
    assert itc.metrics == pytest.approx(dual.metrics) and itm.metrics["acc_add_att"] == 0.0
    assert set(dual.timings) == {"image_encode", "text_encode", "scoring"} and set(cross.timings) == {"scoring"}
    one = meta.load(DatasetRequest("swap_obj", TaskKind.CAPTION_SELECTION, data_root=str(root)))
    assert {it.subset for it in one.items} == {"swap_obj"} and len(one.items) == 4
    limited = meta.load(DatasetRequest("test", TaskKind.CAPTION_SELECTION, data_root=str(root), limit=5, seed=1))
    assert len(limited.items) == 5 and limited.fingerprint != data.fingerprint


def test_sugarcrepe_missing_files_and_images_are_named(tmp_path):
    meta = DATASETS.get("sugarcrepe")
    with pytest.raises(DatasetNotFound, match=r"add_att\.json not found .*--data-root"):
        meta.load(DatasetRequest("test", TaskKind.CAPTION_SELECTION, data_root=str(tmp_path)))
    root = _sugarcrepe(tmp_path)
    (root / "coco" / "val2017" / "000000000002.jpg").unlink()
    with pytest.raises(DatasetError, match=r"000000000002\.jpg"):
        meta.load(DatasetRequest("add_obj", TaskKind.CAPTION_SELECTION, data_root=str(root)))
    (root / "sugarcrepe" / "swap_att.json").write_text(json.dumps({"0": {"filename": "000000000000.jpg",
                                                                         "caption": "a red square"}}))
    with pytest.warns(UserWarning, match=r"swap_att\.json: 1 malformed entry skipped \(entry '0'\)"):
        with pytest.raises(DatasetError, match="no items"):
            meta.load(DatasetRequest("swap_att", TaskKind.CAPTION_SELECTION, data_root=str(root)))
    with pytest.raises(DatasetError, match="--strict"):
        meta.load(DatasetRequest("swap_att", TaskKind.CAPTION_SELECTION, data_root=str(root), strict=True))


def _aro(root, with_order=True):
    folder = root / "aro"
    _image(folder / "images" / "1.jpg", "red", (32, 16), right="blue")
    _image(folder / "images" / "2.jpg", "green")
    rel, att = [], []
    for name, box, true, false in ([
            ("on", (0, 0, 16, 16), "the red is on the table", "the blue is on the table"),       # crop: red, right
            ("on", (16, 0, 16, 16), "the red is on the table", "the blue is on the table"),      # crop: blue, wrong
            ("of", (0, 0, 16, 16), "the red of a green", "the green of a red"),                   # excluded relation
            ("under", (0, 0, 16, 16), "the yellow under it", "the red under it")]):               # wrong
        rel.append({"image_id": 1, "image_path": "1.jpg", "bbox_x": box[0], "bbox_y": box[1], "bbox_w": box[2],
                    "bbox_h": box[3], "relation_name": name, "true_caption": true, "false_caption": false})
    for k in range(30):
        att.append({"image_id": 2, "image_path": "2.jpg", "bbox_x": 0, "bbox_y": 0, "bbox_w": 16, "bbox_h": 16,
                    "attributes": ["green", "big"] if k < 26 else ["small", "red"],
                    "true_caption": "the green thing", "false_caption": "the red thing" if k < 26 else "the green one"})
    (folder / "visual_genome_relation.json").write_text(json.dumps(rel))
    (folder / "visual_genome_attribution.json").write_text(json.dumps(att))
    if with_order:
        _image(root / "coco" / "val2014" / "COCO_val2014_1.jpg", "yellow")
        _image(root / "flickr30k" / "flickr30k-images" / "9.jpg", "blue")
        (folder / "coco_order.json").write_text(json.dumps([{"image": "val2014/COCO_val2014_1.jpg", "caption_options": [
            "a yellow bus", "bus a the", "a bus", "the bus a", "a red bus"]}]))
        (folder / "flickr30k_order.json").write_text(json.dumps([{"image": "flickr30k-images/9.jpg", "caption_options": [
            "a blue sky", "sky a blue", "a sky blue", "blue sky a", "a blue sky"]}]))  # a foil equal to the truth: a tie
    return root


def test_aro_crops_macro_and_micro_and_order_sets(tmp_path):
    root = _aro(tmp_path)
    meta = DATASETS.get("aro")
    data = meta.load(DatasetRequest("test", TaskKind.CAPTION_SELECTION, data_root=str(root)))
    assert len(data.items) == 4 + 30 + 1 + 1
    res = task.evaluate(ColourDual(), data, OPTS)
    m = res.metrics
    # VG-Relation: items right / wrong / right ("of" excluded from the macro) / wrong
    assert m["acc_vg_relation_micro"] == 50.0
    assert m["acc_vg_relation_macro"] == m["acc_vg_relation"] == 25.0  # mean of on (50) and under (0)
    # VG-Attribution: the 26-item pair is right, the 4-item pair (< 25 items) only counts in micro
    assert m["acc_vg_attribution_macro"] == 100.0 and m["acc_vg_attribution_micro"] == pytest.approx(2600 / 30)
    assert m["acc_coco_order"] == 100.0 and m["acc_flickr_order"] == 0.0  # the tie is wrong
    assert m["acc"] == pytest.approx((25 + 100 + 100 + 0) / 4)
    only = meta.load(DatasetRequest("vg_relation", TaskKind.CAPTION_SELECTION, data_root=str(_aro(tmp_path / "b", False))))
    assert len(only.items) == 4
    with pytest.raises(DatasetNotFound, match=r"coco_order\.json not found.*built from ARO's code"):
        meta.load(DatasetRequest("test", TaskKind.CAPTION_SELECTION, data_root=str(tmp_path / "b")))


def _winoground(root):
    folder = root / "winoground" / "data"
    lines = []
    for k, (c0, c1) in enumerate([("red", "blue"), ("green", "yellow"), ("red", "red")]):
        _image(folder / "images" / f"ex_{k}_img_0.png", c0)
        _image(folder / "images" / f"ex_{k}_img_1.png", c1)
        lines.append(json.dumps({"id": k, "caption_0": f"a {c0} mug next to a {c1} one",
                                 "caption_1": f"a {c1} mug next to a {c0} one", "tag": "Noun",
                                 "secondary_tag": "", "num_main_preds": 1, "collapsed_tag": "Object",
                                 "image_0": f"ex_{k}_img_0", "image_1": f"ex_{k}_img_1"}))
    (folder / "examples.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_winoground_jsonl_groups(tmp_path):
    root = _winoground(tmp_path)
    data = DATASETS.get("winoground").load(DatasetRequest("test", TaskKind.CAPTION_SELECTION, data_root=str(root)))
    assert len(data.items) == 3 and all(it.is_group for it in data.items) and len(data.images) == 6
    res = task.evaluate(ColourDual(), data, OPTS)
    # groups 0 and 1: the first-named colour decides, all right; group 2: identical, every check ties
    assert res.metrics == pytest.approx({"text_score": 200 / 3, "image_score": 200 / 3, "group_score": 200 / 3})
    assert res.main_metric == "group_score" and res.per_query["group_score"] == [1, 1, 0]
    cross = task.evaluate(ColourCross(), data, OPTS)
    assert cross.metrics == pytest.approx(res.metrics)


def test_winoground_offline_error_names_both_sources(tmp_path, monkeypatch):
    import harness.core.network as N

    monkeypatch.setattr(N, "host_reachable", lambda *a, **k: False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(DatasetNotFound, match=r"examples\.jsonl not found.*facebook/winoground"):
        DATASETS.get("winoground").load(DatasetRequest("test", TaskKind.CAPTION_SELECTION, data_root=str(tmp_path)))


def test_valse_keeps_validated_items_only(tmp_path):
    folder = tmp_path / "valse"
    _image(folder / "images" / "SWiG" / "a.jpg", "red")
    _image(folder / "images" / "b.jpg", "blue")
    entries = {
        "existence_0": {"dataset": "SWiG", "original_split": "test", "dataset_idx": "a.jpg",
                        "linguistic_phenomena": "existence", "image_file": "a.jpg", "caption": "a red dog",
                        "classes": "dog", "classes_foil": "cat", "mturk": {"foil": 0, "caption": 3, "other": 0},
                        "foil": "a blue dog"},
        "existence_1": {"dataset": "visual7w", "image_file": "b.jpg", "caption": "a blue cat", "foil": "a red cat",
                        "mturk": {"foil": 1, "caption": 2, "other": 0}},
        "existence_2": {"dataset": "visual7w", "image_file": "b.jpg", "caption": "a blue cat", "foil": "a red cat",
                        "mturk": {"foil": 2, "caption": 1, "other": 0}},  # not validated: dropped
    }
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "existence.json").write_text(json.dumps(entries))
    data = DATASETS.get("valse").load(DatasetRequest("existence", TaskKind.CAPTION_SELECTION, data_root=str(tmp_path)))
    assert len(data.items) == 2 and data.info["not_validated"] == 1
    res = task.evaluate(ColourDual(), data, OPTS)
    assert res.metrics == {"acc_existence": 100.0, "acc": 100.0}
    with pytest.raises(DatasetNotFound, match=r"existence\.json not found"):
        DATASETS.get("valse").load(DatasetRequest("test", TaskKind.CAPTION_SELECTION, data_root=str(tmp_path / "x")))


# ------------------------------------------------------------------ synthetic: one implementation with hn_*

def test_synthetic_view_is_the_hard_negative_groups():
    from harness.datasets import synthetic
    from harness.tasks.hard_negatives import hard_negative_groups

    ret = synthetic.load(DatasetRequest("test", TaskKind.RETRIEVAL))
    sel = synthetic.load(DatasetRequest("test", TaskKind.CAPTION_SELECTION))
    assert len(sel.items) == 10320 and sum(it.is_group for it in sel.items) == 3440
    # a noisy dual model over the retrieval view's ids: scores per (image path, caption text)
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(len(ret.images), 8, generator=g), dim=1)
    txt = torch.nn.functional.normalize(img[torch.tensor(ret.caption_to_image)] + 0.9 * torch.randn(
        len(ret.captions), 8, generator=g), dim=1)
    groups = hard_negative_groups(img, txt, ret.caption_to_image, ret.info["hard_negative_pairs"])
    row = {p: i for i, p in enumerate(ret.images.paths)}
    col = {c: j for j, c in enumerate(ret.captions)}  # val/test captions are unique
    texts, pairs, layout = task.item_pairs(sel)
    scores = [float(img[row[sel.images.paths[i]]] @ txt[col[texts[c]]]) for i, c in pairs]
    out = task.outcomes(sel, scores, layout)
    # hn_<kind> = share of the four Winoground checks won over the groups; the caption-selection
    # items are those groups' text-side checks
    for kind in ("colour", "shape", "relation", "count"):
        wins, checks = np.sum(groups[f"hn_{kind}"], axis=0)
        k = sel.spec.subsets.index(kind)
        s = np.array([[scores[p] for p in idx] for it, idx in zip(sel.items, layout) if it.is_group and it.subset == kind])
        group_checks = CM.winoground_checks(s.reshape(-1, 2, 2))
        text_side = [c for c, sub in zip(out["cs_correct"], out["cs_subset"]) if sub == k]
        assert group_checks.sum() == wins and group_checks.size == checks and 0 < wins < checks
        assert sum(text_side) == group_checks[:, :2].sum() and len(text_side) == group_checks[:, :2].size
    metrics = task.metrics_from_outcomes(out)
    assert metrics["acc_binding"] == pytest.approx(
        100 * np.mean([c for c, sub in zip(out["cs_correct"], out["cs_subset"]) if sub in (0, 1)]))


def test_winoground_hf_save_to_disk_copy(tmp_path):
    """facebook/winoground's columns (id, image_0, image_1, caption_0, caption_1, tags) from a local copy."""
    import datasets
    from PIL import Image

    pairs = [("red", "blue"), ("green", "yellow")]
    rows = {"id": [0, 1], "image_0": [Image.new("RGB", (8, 8), COLOURS[a]) for a, _ in pairs],
            "image_1": [Image.new("RGB", (8, 8), COLOURS[b]) for _, b in pairs],
            "caption_0": [f"a {a} cup by a {b} one" for a, b in pairs],
            "caption_1": [f"a {b} cup by a {a} one" for a, b in pairs],
            "tag": ["Noun", "Adjective-Color"], "secondary_tag": ["", ""], "num_main_preds": [1, 1],
            "collapsed_tag": ["Object", "Relation"]}
    features = datasets.Features({"id": datasets.Value("int32"), "image_0": datasets.Image(),
                                  "image_1": datasets.Image(), **{k: datasets.Value("string") for k in (
                                      "caption_0", "caption_1", "tag", "secondary_tag", "collapsed_tag")},
                                  "num_main_preds": datasets.Value("int32")})
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows, features=features)}).save_to_disk(
        str(tmp_path / "winoground"))
    data = DATASETS.get("winoground").load(DatasetRequest("test", TaskKind.CAPTION_SELECTION, data_root=str(tmp_path)))
    assert [it.images for it in data.items] == [(0, 1), (2, 3)] and data.items[1].category == "Relation"
    assert data.info["hf_id"] == "facebook/winoground"
    res = task.evaluate(ColourDual(), data, OPTS)
    assert res.metrics == {"text_score": 100.0, "image_score": 100.0, "group_score": 100.0}


