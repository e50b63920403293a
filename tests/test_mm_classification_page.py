"""The page's image_text_classification part: fused / image-only / text-only with intervals from
the sidecar, modality gain, per-class F1 bars, the best model's confusion matrix, escaping."""

from __future__ import annotations

from pathlib import Path

from harness.results import store
from harness.results.records import ResultRecord
from leaderboard.html import build
from leaderboard.mm_classification import accuracy_intervals

LABELS = [0, 1] * 20


def save(root: Path, model: str, pred, pred_image, pred_text, macro: float) -> None:
    acc = lambda p: 100.0 * sum(a == b for a, b in zip(p, LABELS)) / len(LABELS)  # noqa: E731
    metrics = {"acc": acc(pred), "macro_f1": macro, "acc_image_only": acc(pred_image), "acc_text_only": acc(pred_text),
               "macro_f1_image_only": 33.3, "macro_f1_text_only": 33.3, "weighted_f1": macro, "auroc": 90.0}
    metrics["modality_gain"] = metrics["acc"] - max(metrics["acc_image_only"], metrics["acc_text_only"])
    conf = [[sum(1 for p, y in zip(pred, LABELS) if y == t and p == q) for q in (0, 1)] for t in (0, 1)]
    rec = ResultRecord(
        model={"name": model, "family": "clip", "kind": "dual", "source": "x", "checkpoint": None,
               "checkpoint_sha256": None, "params": None},
        dataset={"name": "synthetic-verify", "split": "test", "fingerprint": "f" * 16, "images": 40},
        task="image_text_classification",
        options={"batch_size": 64, "precision": "fp32", "device": "cpu", "seed": 0, "probe_head": "interact",
                 "probe_features": "embeddings", "classnames": ["false", "<true>"],
                 "per_class_f1": {"false": macro, "<true>": macro}, "confusion": conf},
        metrics=metrics, main_metric="macro_f1", timings={}, memory={}, environment={},
        created_at="2026-12-01T00:00:00+00:00", runtime_s=1.0, run_key=model)
    store.save(root, rec, {"label": LABELS, "pred": pred, "pred_image_only": pred_image, "pred_text_only": pred_text,
                           "correct": [int(p == y) for p, y in zip(pred, LABELS)]})


def test_intervals_are_paired_and_hand_checked():
    ci = accuracy_intervals(LABELS, LABELS, [0] * 40, [1] * 40, n_boot=300)
    assert ci["acc"] == (100.0, 100.0)
    lo, hi = ci["acc_image_only"]
    assert lo < 50.0 < hi
    # gain = 100 - max(image, text) where image + text = 100 on every resample: at most 50
    assert ci["modality_gain"][1] <= 50.0 and ci["modality_gain"][0] > 30.0


def test_page_shows_fused_ablations_gain_bars_and_best_confusion(tmp_path):
    root = tmp_path / "res"
    save(root, "good-model", LABELS, [0] * 40, [1] * 40, macro=100.0)
    save(root, "weak<model>", [0] * 40, [0] * 40, [1] * 40, macro=33.3)
    out = tmp_path / "page.html"
    build(root, out)
    page = out.read_text()
    start = page.index("synthetic-verify/test: fused vs single-modality probes")
    part = page[start:]
    assert "weak&lt;model&gt;" in part and "<model>" not in part  # escaped
    assert part.index("good-model") < part.index("weak&lt;model&gt;")  # best macro-F1 first
    assert '100.0 <span class="ci">[100.0, 100.0]</span>' in part  # fused accuracy of the good model
    assert 'alt="per-class F1"' in part
    assert "confusion matrix of the best model (good-model" in part and "&lt;true&gt;" in part
    assert "<td class=num>20</td><td class=num>0</td>" in part  # its diagonal
