"""image_text_classification: the interact head learns a matching task the concat head and each
modality alone cannot; the run through ``python -m harness run`` on a ``jsonl:DIR`` folder
(record keys, sidecar, the warning for labels train never saw); bad input named in one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from harness.cli.main import main
from harness.datasets.images import ImageSet
from harness.datasets.pair_labels import ImageTextLabelData
from harness.datasets.views import ImageTextProbeData
from harness.metrics.probe import ProbeOptions
from harness.tasks.encode import EncodeOptions
from tests.test_jsonl_pairs import make_folder
from tests.test_pair_loaders import write_png


class _Shade:
    """PIL image -> (1, 1, 1) tensor of its red level (picklable for loader workers)."""

    def __call__(self, image):
        return torch.tensor([[[image.getpixel((0, 0))[0] / 255.0]]])


class XorModel:
    """A dual encoder whose image says bright/dark and whose text says yes/no, each as the sign
    of one axis (plus a constant axis): whether they agree is a product, not a sum."""

    name, embed_dim = "xor", 3

    def image_transform(self):
        return _Shade()

    def tokenize(self, texts):
        return list(texts)

    def encode_images(self, pixels):
        sign = (pixels[:, 0, 0, 0] > 0.5).float() * 2 - 1
        return torch.nn.functional.normalize(torch.stack([sign, torch.ones_like(sign), torch.zeros_like(sign)], 1), dim=1)

    def encode_texts(self, texts):
        sign = torch.tensor([1.0 if t.startswith("yes") else -1.0 for t in texts])
        return torch.nn.functional.normalize(torch.stack([sign, torch.zeros_like(sign), torch.ones_like(sign)], 1), dim=1)


def xor_split(tmp_path: Path, split: str, per_cell: int) -> ImageTextLabelData:
    bright, dark = write_png(tmp_path / "bright.png", 230), write_png(tmp_path / "dark.png", 20)
    images, texts, labels = [], [], []
    for k in range(per_cell):
        for img, word in ((bright, "yes"), (bright, "no"), (dark, "yes"), (dark, "no")):
            images.append(img)
            texts.append(f"{word} {k}")
            labels.append(int((img == bright) == (word == "yes")))
    return ImageTextLabelData(name="xor", split=split, images=ImageSet(images), texts=texts, labels=labels,
                              classnames=["differ", "agree"], multilabel=False, fingerprint=split)


@pytest.mark.parametrize("head", ["interact", "concat"])
def test_interact_learns_agreement_that_concat_and_each_modality_cannot(tmp_path, head):
    from harness.tasks.image_text_classification import evaluate

    data = ImageTextProbeData(train=xor_split(tmp_path, "train", 10), eval=xor_split(tmp_path, "test", 5))
    out = evaluate(XorModel(), data, EncodeOptions(batch_size=8), head=head,
                   probe_opts=ProbeOptions(c_grid=(1e-2, 1.0, 1e2), refine=1))
    m = out.metrics
    # each modality alone is exactly uninformative: every image and every word is half agree, half differ
    assert m["acc_image_only"] == m["acc_text_only"] == 50.0
    if head == "interact":  # u*v carries the agreement: separable
        assert m["acc"] == m["macro_f1"] == m["auroc"] == 100.0 and m["modality_gain"] == 50.0
    else:  # additive in u and v: XOR is out of reach of a linear probe
        assert m["acc"] <= 75.0 and m["modality_gain"] <= 25.0
    assert m["modality_gain"] == m["acc"] - max(m["acc_image_only"], m["acc_text_only"])
    assert out.main_metric == "macro_f1" and out.details["probe_head"] == head
    assert len(out.per_query["pred"]) == len(out.per_query["pred_image_only"]) == 20
    conf = [[0, 0], [0, 0]]
    for p, y in zip(out.per_query["pred"], out.per_query["label"]):
        conf[y][p] += 1
    assert out.details["confusion"] == conf and sum(map(sum, conf)) == 20


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and "warn" not in ln.lower()]
    assert len(lines) == 1 and lines[0].startswith("vlbench: error: ") and "internal" not in lines[0], err
    return lines[0]


def rows(n: int, labels: list[str], prefix: str) -> list:
    return [(f"imgs/{prefix}{i}.png", f"{labels[i % len(labels)]} words {i}", labels[i % len(labels)]) for i in range(n)]


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("VLBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_run_on_a_jsonl_folder_writes_every_key_and_the_sidecar(env, capsys):
    test = rows(6, ["red", "blue"], "t") + [("imgs/g.png", "green words", "green")]
    folder = make_folder(env / "mine", train=rows(8, ["red", "blue"], "r"), test=test)
    code, out, err = run(capsys, "run", "--model", "tiny-clip-random", "--dataset", f"jsonl:{folder}",
                         "--task", "mm_classification", "--results", str(env / "res"), "--no-progress",
                         "--task-option", "head=concat")
    assert code == 0, err
    assert re.search(r"1 item\(s\) carry label\(s\) the train split never has \('green'\), e.g. test.jsonl:7", err), err
    path = next(p for p in (env / "res").rglob("*__test__*.json") if not p.name.endswith(".queries.json"))
    rec = json.loads(path.read_text())
    m, o = rec["metrics"], rec["options"]
    assert rec["task"] == "image_text_classification" and rec["main_metric"] == "macro_f1"
    assert {"acc", "macro_f1", "weighted_f1", "acc_image_only", "acc_text_only", "macro_f1_image_only",
            "macro_f1_text_only", "modality_gain"} <= set(m) and "auroc" not in m  # three classes
    assert m["modality_gain"] == pytest.approx(m["acc"] - max(m["acc_image_only"], m["acc_text_only"]))
    assert o["probe_head"] == "concat" and o["task_options"] == {"features": "embeddings", "head": "concat"}
    assert all(isinstance(o[k], float) for k in ("probe_c", "probe_c_image_only", "probe_c_text_only"))
    assert o["unseen_classes"] == ["green"] and o["unseen_items"] == 1
    assert sum(map(sum, o["confusion"])) == 7 and o["confusion"][1][1] == 0  # green (class 1) is never predicted
    assert rec["dataset"]["train_items"] == 8 and rec["dataset"]["train_images_digest"]
    side = json.loads(path.with_name(path.name.replace(".json", ".queries.json")).read_text())
    assert side["label"][-1] == 1 and side["correct"][-1] == 0  # green (class 1) can never be predicted
    assert len(side["pred_text_only"]) == len(side["pred_image_only"]) == 7


@pytest.mark.parametrize("case, words", [
    ("lonely_class", r"class 'green' has 1 item\(s\) \(train.jsonl:9\); holding part of train out"),
    ("eval_on_train", r"never on the split it is evaluated on"),
    ("missing_image", r"test.jsonl:2 \(imgs/none.png\)"),
    ("empty_labels", r"test.jsonl:2: a multi-label item with no labels"),
    ("label_type", r"test.jsonl:2: field 'label' must be .* got float 1.5"),
    ("empty_split", r"test.jsonl: empty split \(no items\)"),
])
def test_bad_input_is_one_line_naming_file_and_line(env, capsys, case, words):
    train, test, split = rows(8, ["red", "blue"], "r"), rows(2, ["red", "blue"], "t"), "test"
    if case == "lonely_class":
        train.append(("imgs/g.png", "green", "green"))
    elif case == "eval_on_train":
        split = "train"
    elif case == "missing_image":
        test[1] = {"image": "imgs/none.png", "text": "t", "label": "red"}
    elif case == "empty_labels":
        train = [(p, t, [y]) for p, t, y in train]
        test = [test[0][:2] + ([test[0][2]],), {"image": "imgs/t0.png", "text": "t", "label": []}]
    elif case == "label_type":
        test[1] = {"image": "imgs/t0.png", "text": "t", "label": 1.5}
    folder = make_folder(env / case, train=train, test=test)
    if case == "empty_split":
        (folder / "test.jsonl").write_text("\n")
    code, _, err = run(capsys, "run", "--model", "tiny-clip-random", "--dataset", f"jsonl:{folder}", "--split", split,
                       "--task", "image_text_classification", "--results", str(env / "res"), "--no-progress")
    assert code == 2 and re.search(words, error_line(err)), err
    assert not list(env.rglob("res/**/*.json"))  # nothing half-written


def test_options_are_checked_before_any_work(env, capsys):
    folder = make_folder(env / "opts", train=rows(8, ["red", "blue"], "r"), test=rows(2, ["red", "blue"], "t"))
    for model, option, words in (
            ("tiny-clip-random", "head=sum", r"head=sum: image_text_classification takes one of interact, concat"),
            ("fusion-early-synth", "head=concat", r"head=concat: a cross-encoder's joint features are already fused"),
            ("tiny-clip-random", "features=joint", r"features=joint needs a cross-encoder; tiny-clip-random is a dual")):
        code, _, err = run(capsys, "run", "--model", model, "--dataset", f"jsonl:{folder}", "--task", "mm_classification",
                           "--task-option", option, "--results", str(env / "res"), "--no-progress")
        assert code == 2 and re.search(words, error_line(err)), err
