"""harness.metrics.confusion (the one definition of macro-F1 / balanced accuracy) and harness.metrics.keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import harness.metrics.confusion as C
import harness.metrics.keys as K
from harness.metrics.functional import MetricKey, classification_metrics_from_preds


def naive_macro_f1_and_balanced(labels: list[int], preds: list[int]) -> tuple[float, float]:
    """Textbook loops over classes, for reference: F1 over classes seen in labels or preds,
    recall over classes seen in labels."""
    classes = sorted(set(labels) | set(preds))
    f1s, recalls = [], []
    for c in classes:
        tp = sum(y == c and p == c for y, p in zip(labels, preds))
        fp = sum(y != c and p == c for y, p in zip(labels, preds))
        fn = sum(y == c and p != c for y, p in zip(labels, preds))
        f1s.append(2 * tp / (2 * tp + fp + fn))
        if tp + fn:
            recalls.append(tp / (tp + fn))
    return 100 * sum(f1s) / len(f1s), 100 * sum(recalls) / len(recalls)



def test_six_samples_three_classes_by_hand():
    labels, preds = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    conf = C.confusion_matrices(labels, preds, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # F1: class 0 = 2/(2+2), class 1 = 4/(4+1), class 2 = 2/(2+1); recalls 1/2, 1, 1/2
    assert float(C.macro_f1(conf)) == pytest.approx(100 * (0.5 + 0.8 + 2 / 3) / 3)
    assert float(C.balanced_accuracy(conf)) == pytest.approx(100 * 2 / 3)


def test_absent_classes_are_left_out_like_the_metric():
    # class 1 never occurs, class 3 only predicted (F1 0, no recall), class 2 only true (F1 0, recall 0)
    labels, preds = [0, 0, 2, 4], [0, 3, 0, 4]
    conf = C.confusion_matrices(labels, preds, 6)
    f1, bal = naive_macro_f1_and_balanced(labels, preds)
    assert float(C.macro_f1(conf)) == pytest.approx(f1)          # (1/2 + 0 + 0 + 1) / 4
    assert float(C.macro_f1(conf)) == pytest.approx(37.5)
    assert float(C.balanced_accuracy(conf)) == pytest.approx(bal)  # (1/2 + 0 + 1) / 3
    assert float(C.balanced_accuracy(conf)) == pytest.approx(50.0)


def test_batched_equals_one_set_at_a_time_and_the_run_metric():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 7, size=(20, 60))
    preds = np.where(rng.random((20, 60)) < 0.6, labels, rng.integers(0, 9, size=(20, 60)))
    conf = C.confusion_matrices(labels, preds, 9)
    assert conf.shape == (20, 9, 9) and (conf.sum((-1, -2)) == 60).all()
    f1, bal = C.macro_f1(conf), C.balanced_accuracy(conf)
    for i in range(20):
        ref_f1, ref_bal = naive_macro_f1_and_balanced(labels[i].tolist(), preds[i].tolist())
        assert f1[i] == pytest.approx(ref_f1) and bal[i] == pytest.approx(ref_bal)
        run = classification_metrics_from_preds(torch.as_tensor(preds[i]), torch.as_tensor(labels[i]))
        assert run[MetricKey.MACRO_F1] == pytest.approx(f1[i], abs=1e-12)
        assert run[MetricKey.BALANCED_ACC] == pytest.approx(bal[i], abs=1e-12)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="one shape"):
        C.confusion_matrices([0, 1], [0], 2)
    with pytest.raises(ValueError, match=r"preds must lie in \[0, 2\)"):
        C.confusion_matrices([0, 1], [0, 2], 2)
    with pytest.raises(ValueError, match="integer class ids"):
        C.confusion_matrices([0.0, 1.0], [0, 1], 2)


def test_metric_key_keeps_its_import_path_and_values():
    from harness.metrics import functional as metrics

    assert metrics.MetricKey is K.MetricKey and str(K.MetricKey.BALANCED_ACC) == "balanced_acc"
    assert K.hard_negative_key("relation_swap") == "hn_relation" and not K.is_hard_negative_key("hn_")
