"""``vlbench fit MODEL --task image_text_classification``: fusion classifiers fitted end to end on
a train split (binary, multi-class, multi-label; ``jsonl:DIR`` and the synthetic views), their
card, and ``vlbench run --weights FIT`` scoring with the fitted head's own predictions.

Offline and fast: random tiny open_clip towers (``tiny-clip-random``), tiny data, few epochs.
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from harness.core.errors import OptionError, UserError
from harness.core.interfaces import WeightsUnavailableError
from harness.datasets import DatasetRequest, TaskKind, resolve_dataset
from harness.models.fusion import classifier as C
from harness.models.fusion import model as FU
from harness.models.fusion.towers import TowerSpec, load_towers
from harness.run.runner import RunOptions, RunSpec, run_one
from harness.training.classifier_fit import ClassifierFitOptions, fit_classifier

TINY = TowerSpec("tiny-clip-random.image", "tiny-clip-random.text", image_size=64, crop=False, text_max_tokens=16)
SMALL = {"dim": 32, "hidden": 64, "heads": 4}
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy machine two threads' spin-waits
    make the probes' L-BFGS ~20x slower (measured on the 2-core CI box); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def towers(one_thread):
    return load_towers(TINY)


def spec(kind: str) -> FU.FusionSpec:
    """The registered model's design over the tiny towers (its checkpoint says which towers)."""
    return FU.FusionSpec(f"fusion-{kind}-synth", kind, TINY, "synthetic", "val", head_options=SMALL)


def write_jsonl_dir(root, kind: str):
    """A user's folder: coloured squares; binary = does the text name the colour, multiclass =
    the colour, multilabel = the colour and (when it says so) 'big'."""
    (root / "img").mkdir(parents=True)
    for name, rgb in COLOURS.items():
        for size in (20, 40):
            im = Image.new("RGB", (48, 48), (128, 128, 128))
            im.paste(Image.new("RGB", (size, size), rgb), (4, 4))
            im.save(root / "img" / f"{name}{size}.png")
    rows = {"train": [], "test": []}
    for split, reps in (("train", 3), ("test", 1)):
        for r in range(reps):
            for name in COLOURS:
                for size in (20, 40):
                    for said in COLOURS:
                        if kind == "binary" and said not in (name, list(COLOURS)[(list(COLOURS).index(name) + 1 + r) % 4]):
                            continue
                        if kind != "binary" and said != name:
                            continue
                        label = {"binary": "yes" if said == name else "no", "multiclass": name,
                                 "multilabel": [name, "big"] if size == 40 else [name]}[kind]
                        rows[split].append({"image": f"img/{name}{size}.png", "text": f"a {said} square {r}",
                                            "label": label})
    for split, items in rows.items():
        (root / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items))
    return f"jsonl:{root}"


def fit(kind, dataset, out, towers, **opts):
    base = {"epochs": 2, "lrs": (3e-3,), "batch_size": 16, "warmup_steps": 2}
    return fit_classifier(spec(kind), dataset, "train", out, ClassifierFitOptions(**{**base, **opts}),
                          towers=towers, command=f"test {kind}", log=lambda m: None)


def run(kind, dataset, weights, results, **opts):
    return run_one(RunSpec(f"fusion-{kind}-synth", dataset, "image_text_classification",
                           options=RunOptions(weights=str(weights), batch_size=16, **opts)), results, force=True)


def direct_logits(towers, ckpt, dataset, split="test", limit=None):
    """The fitted head's logits on the evaluation items, computed without the task."""
    meta = FU.read_metadata(ckpt, "test")
    head = C.load_state(C.build(meta), {k: v for k, v in _tensors(ckpt).items()}, "test", ckpt)
    data = resolve_dataset(dataset).load(DatasetRequest(split=split, task=TaskKind.IMAGE_TEXT_CLASSIFICATION,
                                                        limit=limit))
    px = torch.stack([towers.image_transform()(data.images.load(i)) for i in range(len(data))])
    with torch.no_grad():
        logits = head(towers.image_features(px), towers.text_features(data.texts))
    return head, data, logits


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def binary(tmp_path_factory, towers):
    root = tmp_path_factory.mktemp("binary")
    dataset = write_jsonl_dir(root / "data", "binary")
    card = fit("late", dataset, root / "fits", towers, lrs=(1e-3, 3e-3))
    return dataset, root, card


def test_binary_fit_on_jsonl_dir_writes_checkpoint_and_card(binary):
    dataset, root, card = binary
    ckpt = root / "fits" / card["checkpoint"]
    assert card["checkpoint"] == "fusion-late-synth-jsonl-data.safetensors" and ckpt.is_file()
    assert FU.card_path(ckpt).is_file() and json.loads(FU.card_path(ckpt).read_text()) == card
    assert card["labels"] == {"classnames": ["no", "yes"], "kind": "binary", "thresholds": None}
    assert card["task"] == "image_text_classification" and card["design"] == "late"
    data = resolve_dataset(dataset).load(DatasetRequest(split="train", task=TaskKind.IMAGE_TEXT_CLASSIFICATION))
    assert card["data"]["fingerprint"] == data.fingerprint and card["data"]["items"] == len(data) == 48
    assert card["data"]["class_counts"] == {"no": 24, "yes": 24}
    held = card["holdout"]
    assert held["fit_items"] + held["held_items"] == 48 and held["held_items"] == 10  # round(0.2 * 24) per class
    sel = card["selection"]
    assert [s["lr"] for s in sel["search"]] == [1e-3, 3e-3] and sel["lr"] in (1e-3, 3e-3)
    assert all(len(s["history"]) == 2 for s in sel["search"]) and sel["epoch"] in (1, 2)
    chosen = next(s for s in sel["search"] if s["lr"] == sel["lr"])
    assert chosen["best"]["macro_f1"] == max(s["best"]["macro_f1"] for s in sel["search"])
    assert set(sel["held_out"]) >= {"acc", "macro_f1", "auroc", "loss"}
    assert card["recipe"]["lrs"] == [1e-3, 3e-3] and card["checkpoint_sha256"] and card["command"] == "test late"
    assert card["head_params"] == sum(t.numel() for t in _tensors(ckpt).values())
    assert "matching" not in json.dumps(card["head"]) and not any(k.startswith("trunk.match") for k in _tensors(ckpt))


def test_run_with_fitted_weights_scores_the_heads_own_predictions(binary, towers, tmp_path):
    dataset, root, card = binary
    ckpt = root / "fits" / card["checkpoint"]
    out = run("late", dataset, ckpt, tmp_path)
    rec = out.record
    head, data, logits = direct_logits(towers, ckpt, dataset)
    pred = logits.double().argmax(1).numpy()
    y = np.asarray(data.labels)
    assert rec.metrics["acc"] == pytest.approx(100 * accuracy_score(y, pred), abs=1e-9)
    assert rec.metrics["macro_f1"] == pytest.approx(100 * f1_score(y, pred, average="macro"), abs=1e-9)
    assert rec.metrics["auroc"] == pytest.approx(100 * roc_auc_score(y, logits.double().softmax(-1)[:, 1]), abs=1e-6)
    assert rec.options["probe_head"] == "fitted" and rec.options["fitted_design"] == "late"
    assert rec.options["probe_c"] is None and rec.options["probe_c_image_only"] > 0
    assert "towers' L2-normalised pooled" in rec.options["ablation"]
    assert {"acc_image_only", "acc_text_only", "modality_gain"} <= set(rec.metrics)
    assert rec.model["checkpoint_sha256"] == card["checkpoint_sha256"]
    # the fitted weights' content is in the run key: refitted (another seed) under the same
    # path, it is another run
    assert key_of(dataset, ckpt) == rec.run_key
    other = fit("late", dataset, tmp_path / "other", towers, seed=1)
    assert other["checkpoint_sha256"] != card["checkpoint_sha256"]
    same_path = tmp_path / "w" / card["checkpoint"]
    same_path.parent.mkdir()
    same_path.write_bytes(ckpt.read_bytes())
    before = key_of(dataset, same_path)
    same_path.write_bytes((tmp_path / "other" / other["checkpoint"]).read_bytes())
    assert key_of(dataset, same_path) != before


def key_of(dataset, weights):
    from harness.run.runner import Resolved, images_content

    r = Resolved.of(RunSpec("fusion-late-synth", dataset, "image_text_classification",
                            options=RunOptions(weights=str(weights), batch_size=16)))
    data = r.load_data()
    return r.run_key(data, images_content(data, r.options))


def test_multiclass_fit_on_a_synthetic_view_subset(towers, tmp_path):
    card = fit("xattn", "synthetic-qa", tmp_path, towers, limit=120)
    assert card["labels"]["kind"] == "multiclass" and len(card["labels"]["classnames"]) == 6
    assert card["data"]["items"] == 120 and card["data"]["subset"]["limit"] == 120
    assert card["holdout"]["unit"].startswith("holdout groups")
    assert card["head"]["kind"] == "xattn" and card["head"]["grid_tokens"] > 0


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory, towers):
    root = tmp_path_factory.mktemp("multiclass")
    dataset = write_jsonl_dir(root / "data", "multiclass")
    return dataset, root, fit("xattn", dataset, root / "fits", towers)


def test_multiclass_run_scores_the_heads_own_predictions(multiclass, towers, tmp_path):
    dataset, root, card = multiclass
    ckpt = root / "fits" / card["checkpoint"]
    rec = run("xattn", dataset, ckpt, tmp_path).record
    _, data, logits = direct_logits(towers, ckpt, dataset)
    pred = logits.double().argmax(1).numpy()
    assert rec.metrics["acc"] == pytest.approx(100 * accuracy_score(data.labels, pred), abs=1e-9)
    assert rec.metrics["macro_f1"] == pytest.approx(100 * f1_score(data.labels, pred, average="macro"), abs=1e-9)
    assert "auroc" not in rec.metrics and rec.options["fitted_labels"] == ["blue", "green", "red", "yellow"]


def test_multilabel_fit_thresholds_and_scores(towers, tmp_path):
    dataset = write_jsonl_dir(tmp_path / "data", "multilabel")
    card = fit("early", dataset, tmp_path / "fits", towers, epochs=3)
    labels = card["labels"]
    assert labels["kind"] == "multilabel" and labels["classnames"] == ["big", "blue", "green", "red", "yellow"]
    assert len(labels["thresholds"]) == 5 and all(0 < t < 1 for t in labels["thresholds"])
    assert {"micro_f1", "samples_f1"} <= set(card["selection"]["held_out"])
    ckpt = tmp_path / "fits" / card["checkpoint"]
    rec = run("early", dataset, ckpt, tmp_path / "res").record
    _, data, logits = direct_logits(towers, ckpt, dataset)
    pred = (logits.double().sigmoid() >= torch.tensor(labels["thresholds"], dtype=torch.float64)).numpy()
    truth = np.zeros_like(pred)
    for i, ys in enumerate(data.labels):
        truth[i, ys] = True
    for avg in ("micro", "macro", "samples"):
        want = 100 * f1_score(truth, pred, average=avg, zero_division=0)
        assert rec.metrics[f"{avg}_f1"] == pytest.approx(want, abs=1e-9)
    assert rec.options["fitted_thresholds"] == labels["thresholds"]


def test_fit_is_deterministic(binary, towers, tmp_path):
    dataset, root, card = binary
    again = fit("late", dataset, tmp_path, towers, lrs=(1e-3, 3e-3))
    a, b = _tensors(root / "fits" / card["checkpoint"]), _tensors(tmp_path / again["checkpoint"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again["selection"] == card["selection"] and again["checkpoint_sha256"] == card["checkpoint_sha256"]


def test_label_set_mismatch_is_one_line(binary, multiclass, capsys):
    from harness.cli.main import main

    dataset, root, card = binary
    ckpt = root / "fits" / card["checkpoint"]
    other = multiclass[0]
    code = main(["run", "--model", "fusion-late-synth", "--weights", str(ckpt), "--task", "image_text_classification",
                 "--dataset", other, "--results", str(root / "res")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert f"{ckpt}: fitted for labels [no, yes] (binary)" in err
    assert f"{other}/test has labels [blue, green, red, yellow] (multiclass)" in err


def test_fitted_weights_refuse_matching_and_probe_options(binary, tmp_path):
    dataset, root, card = binary
    ckpt = root / "fits" / card["checkpoint"]
    with pytest.raises(WeightsUnavailableError, match="is a fitted classifier"):
        FU.load_head(ckpt, "prefilter")
    with pytest.raises(OptionError, match="task-option head/features apply to probes"):
        run_one(RunSpec("fusion-late-synth", dataset, "image_text_classification",
                        options=RunOptions(weights=str(ckpt), task_options=(("head", "concat"),))), tmp_path)
    with pytest.raises(WeightsUnavailableError, match="holds a late head, expected early"):
        run("early", dataset, ckpt, tmp_path)


def test_bad_fit_options_and_data(tmp_path, towers, capsys):
    from harness.cli.main import main

    for bad in ({"epochs": 0}, {"lrs": ()}, {"lrs": (-1.0,)}, {"holdout": 1.0}, {"limit": 0}, {"batch_size": -2}):
        with pytest.raises(OptionError):
            ClassifierFitOptions(**bad)
    for argv, says in (
            (["fit", "fusion-late-synth", "--task", "image_text_classification"], "needs --dataset D"),
            (["fit", "fusion-late-synth", "--task", "zeroshot"], "retrieval (matching) or image_text_classification"),
            (["fit", "fusion-late-synth", "--task", "image_text_classification", "--dataset", "synthetic-qa",
              "--select-split", "val"], "--select-split applies to the matching fit"),
            (["fit", "fusion-late-synth", "--dataset", "synthetic-qa", "--limit", "5"], "--limit, --name and --init apply"),
            (["fit", "fusion-late-synth", "--task", "image_text_classification", "--dataset", "synthetic"],
             "has no image + text -> label view"),
            (["fit", "fusion-late-synth", "--task", "image_text_classification", "--dataset", "jsonl:/nonexistent"],
             "folder /nonexistent not found")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert says in err and "\n" not in err, (argv, err)
    # jsonl:DIR resolves for the matching fit too (which then says what it needs)
    dataset = write_jsonl_dir(tmp_path / "data", "multiclass")
    assert main(["fit", "fusion-late-synth", "--dataset", dataset, "--select-split", "test"]) == 2
    assert "fusion models train for matching on a retrieval view" in capsys.readouterr().err
    # a class with one train item cannot be held out: named before any feature is computed
    lines = (tmp_path / "data" / "train.jsonl").read_text().splitlines()
    (tmp_path / "data" / "train.jsonl").write_text("\n".join(x for x in lines if '"red"' not in x)
                                                   + "\n" + next(x for x in lines if '"red"' in x) + "\n")
    with pytest.raises(UserError, match="class 'red' has 1 item"):
        fit("late", dataset, tmp_path / "fits", towers)


# ------------------------------------------------------------------ --init from a matching head

def _matching_checkpoint(kind, towers, path, tower_spec=None, **head_options):
    """A matching head of ``kind`` over the tiny towers, weights away from any seeded init."""
    from harness.models.fusion.heads import HeadConfig, build_head

    grid = towers.image_features(torch.zeros(1, 3, 64, 64))["grid"].shape[1]
    cfg = HeadConfig(kind=kind, image_dim=towers.image_dim, text_dim=towers.text_dim, grid_tokens=grid,
                     text_tokens=TINY.text_max_tokens, **{**SMALL, **head_options})
    head = build_head(cfg)
    torch.manual_seed(7)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    FU.save_checkpoint(path, head, tower_spec or towers.spec)
    return head


@pytest.mark.parametrize("kind", ["late", "xattn"])
def test_init_starts_the_trunk_from_a_matching_checkpoint(kind, towers, tmp_path):
    dataset = write_jsonl_dir(tmp_path / "data", "multiclass")
    head = _matching_checkpoint(kind, towers, tmp_path / "match.safetensors")
    card = fit(kind, dataset, tmp_path / "fits", towers, epochs=1, lrs=(1e-9,), init=str(tmp_path / "match.safetensors"))
    saved = _tensors(tmp_path / "fits" / card["checkpoint"])
    trunk = {k[len("trunk."):]: v for k, v in saved.items() if k.startswith("trunk.")}
    theirs = head.state_dict()
    assert trunk and set(trunk) <= set(theirs)  # the match output is not carried over
    for key, value in trunk.items():  # lr 1e-9: the trunk is the checkpoint's, up to fp16
        torch.testing.assert_close(value.float(), theirs[key].half().float(), atol=1e-3, rtol=0)
    assert card["init"]["trunk_from"] == str(tmp_path / "match.safetensors") and len(card["init"]["sha256"]) == 64
    scratch = fit(kind, dataset, tmp_path / "scratch", towers, epochs=1, lrs=(1e-9,))
    assert scratch["init"] is None
    first = next(iter(trunk))
    assert not torch.allclose(_tensors(tmp_path / "scratch" / scratch["checkpoint"])["trunk." + first].float(),
                              trunk[first].float(), atol=1e-3)


def test_init_from_another_design_or_size_is_one_clear_error(towers, tmp_path):
    dataset = write_jsonl_dir(tmp_path / "data", "multiclass")
    _matching_checkpoint("late", towers, tmp_path / "late.safetensors")
    with pytest.raises(OptionError, match=r"--init .*late.safetensors: a late head; fusion-xattn-synth fits a "
                                          r"xattn classifier"):
        fit("xattn", dataset, tmp_path / "fits", towers, init=str(tmp_path / "late.safetensors"))
    _matching_checkpoint("late", towers, tmp_path / "wide.safetensors", dim=48)
    with pytest.raises(OptionError, match=r"dim: 48 in the checkpoint, 32 here"):
        fit("late", dataset, tmp_path / "fits", towers, init=str(tmp_path / "wide.safetensors"))
    from dataclasses import replace

    _matching_checkpoint("late", towers, tmp_path / "big.safetensors", tower_spec=replace(TINY, image_size=96))
    with pytest.raises(OptionError, match=r"big.safetensors: trained over other tower settings .*'image_size': 96"):
        fit("late", dataset, tmp_path / "fits", towers, init=str(tmp_path / "big.safetensors"))
    assert not (tmp_path / "fits").exists() or not list((tmp_path / "fits").iterdir())  # nothing written
