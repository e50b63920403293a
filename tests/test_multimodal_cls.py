"""image_text_classification's metrics equal scikit-learn's (f1_score in every average,
roc_auc_score) on seeded data with ties and absent classes; the one-vs-rest probe and its
thresholds; the fusion heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from harness.metrics.multimodal_cls import (
    auroc,
    best_threshold,
    modality_gain,
    multilabel_metrics,
    single_label_metrics,
)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [2, 3, 7])
def test_single_label_f1s_equal_sklearn_with_absent_classes(seed, k):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 40))
    # classes drawn from a subset: some classes absent from labels, some from predictions, some from both
    labels = rng.choice(rng.permutation(k)[: max(1, k - 2)], n)
    preds = np.where(rng.random(n) < 0.6, labels, rng.choice(rng.permutation(k)[: max(1, k - 1)], n))
    m = single_label_metrics(labels.tolist(), preds.tolist(), k)
    assert m["acc"] == pytest.approx(100 * accuracy_score(labels, preds))
    assert m["macro_f1"] == pytest.approx(100 * f1_score(labels, preds, average="macro", zero_division=0))
    assert m["weighted_f1"] == pytest.approx(100 * f1_score(labels, preds, average="weighted", zero_division=0))
    per = f1_score(labels, preds, labels=list(range(k)), average=None, zero_division=0)
    present = set(labels) | set(preds)
    assert m["per_class_f1"] == [pytest.approx(100 * per[c]) if c in present else None for c in range(k)]
    assert np.array(m["confusion"]).sum() == n and np.trace(m["confusion"]) == int((labels == preds).sum())
    if k == 2:
        assert m["f1_pos"] == pytest.approx(100 * f1_score(labels, preds, average="binary", zero_division=0))


@pytest.mark.parametrize("seed", range(8))
def test_auroc_equals_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 60))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    scores = rng.integers(0, 5, n) / 4.0  # few distinct values: many ties, within and across classes
    assert auroc(y, scores) == pytest.approx(100 * roc_auc_score(y, scores))
    assert auroc(np.ones(5), np.arange(5)) is None  # one class: undefined, never NaN


def test_auroc_hand_case_and_binary_record():
    # positives 0.4, 0.8; negatives 0.1, 0.4: pairs (0.4>0.1) (0.4=0.4: 1/2) (0.8>0.1) (0.8>0.4) -> 3.5/4
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.4, 0.8]) == 87.5
    m = single_label_metrics([0, 1, 1, 0], [0, 1, 0, 0], 2, pos_scores=[0.2, 0.9, 0.4, 0.1])
    assert m["auroc"] == 100.0 and m["confusion"] == [[2, 0], [1, 1]]


@pytest.mark.parametrize("seed", range(6))
def test_multilabel_f1s_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(3, 30)), int(rng.integers(2, 8))
    truth = (rng.random((n, k)) < 0.3).astype(int)
    pred = (rng.random((n, k)) < 0.3).astype(int)
    truth[:, -1] = 0  # a label no item carries (and maybe none predicted): macro counts it as 0
    pred[0] = 0       # an item with nothing predicted
    m = multilabel_metrics(truth, pred)
    for avg in ("micro", "macro", "weighted", "samples"):
        assert m[f"{avg}_f1"] == pytest.approx(100 * f1_score(truth, pred, average=avg, zero_division=0)), avg
    assert m["acc"] == pytest.approx(100 * accuracy_score(truth, pred))
    assert m["per_class_f1"] == pytest.approx(list(100 * f1_score(truth, pred, average=None, zero_division=0)))


def test_best_threshold_and_modality_gain():
    # held-out positives at 0.3 and 0.35 (below 0.5): the F1-best cut is between 0.1 and 0.3
    assert best_threshold([0.1, 0.3, 0.35, 0.9], [0, 1, 1, 1]) == 0.2
    # a perfect split at 0.5 already: 0.5 kept (ties go to the plain rule)
    assert best_threshold([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 0.5
    assert modality_gain(80.0, 55.0, 60.0) == 20.0 and modality_gain(50.0, None, None) is None


def test_one_vs_rest_probe_matches_sklearn_per_label_at_its_c():
    from harness.metrics.ovr_probe import ProbeOptions, fit_ovr

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(120, 6, generator=gen, dtype=torch.float64)
    noise = torch.randn(120, 3, generator=gen, dtype=torch.float64) * 0.5  # not separable: C stays finite
    y = torch.stack([x[:, 0] + noise[:, 0] > 0, x[:, 1] - x[:, 2] + noise[:, 1] > 0.5, x[:, 3] + noise[:, 2] > 1.0],
                    dim=1).long()
    ovr = fit_ovr(x, y, ProbeOptions(seed=0, c_grid=(1e-2, 1.0, 1e2), refine=1))
    probs = ovr.probabilities(x)
    for label, c in enumerate(ovr.c):
        # a two-class softmax at C has the minimiser of scikit-learn's binary (sigmoid) objective
        # at 2C: w1 - w0 = w with w1 = -w0, so ||w0||^2 + ||w1||^2 = ||w||^2 / 2
        ref = LogisticRegression(C=2 * c, max_iter=5000, tol=1e-10).fit(x.numpy(), y[:, label].numpy())
        np.testing.assert_allclose(probs[:, label].numpy(), ref.predict_proba(x.numpy())[:, 1], atol=1e-3)
    assert all(0.0 < t < 1.0 for t in ovr.thresholds)
    pred = ovr.predict(x).long()
    assert (pred == y).double().mean() >= 0.75  # learnable labels are learnt (noise caps it near 0.85)


def test_fusion_heads_and_pairs():
    from harness.tasks.pair_features import fuse

    u, v = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.6, 0.8]])
    assert fuse([u], v, "concat")[0].tolist() == pytest.approx([1.0, 0.0, 0.6, 0.8])
    inter = fuse([u], v, "interact")
    assert inter.shape == (1, 8) and inter[0, 4:6].tolist() == pytest.approx([0.6, 0.0])
    assert inter[0, 6:].tolist() == pytest.approx([0.4, 0.8])
    left, right = u, torch.tensor([[0.0, 1.0]])
    pair = fuse([left, right], v, "interact")  # [uL; uR; v; uL*v; |uL-v|; uR*v; |uR-v|]
    assert pair.shape == (1, 14) and pair[0, 10:12].tolist() == pytest.approx([0.0, 0.8])
    with pytest.raises(ValueError, match="head 'sum'"):
        fuse([u], v, "sum")
