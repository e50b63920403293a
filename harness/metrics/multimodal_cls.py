"""Metrics of image + text -> label classification (``image_text_classification``): pure numpy,
percent, scikit-learn's definitions (tested against ``sklearn.metrics.f1_score`` in every
average and ``roc_auc_score`` on seeded data with ties and absent classes).

* single-label (binary or multi-class), from a confusion matrix
  (:func:`harness.metrics.confusion.confusion_matrices`): accuracy, macro-F1 over the classes
  present in the labels or the predictions (sklearn's default label set), support-weighted F1,
  per-class F1; binary adds ``f1_pos`` (F1 of class 1, sklearn's ``average="binary"``) and
  ``auroc`` of a score for class 1, ties given half credit (the Mann-Whitney U statistic);
* multi-label, from 0/1 indicator matrices (items x labels): micro-, macro-, weighted- and
  samples-F1 as sklearn computes them for multi-label input (macro over every label column,
  a label with no true and no predicted item counting 0, as ``zero_division=0``) and the
  subset accuracy (every label of the item right), the MM-IMDb paper's set of numbers
  (Arevalo et al. 2017).

:func:`best_threshold` chooses a multi-label probe's per-label decision threshold on held-out
train data.
"""

from __future__ import annotations

import numpy as np

from harness.metrics.confusion import confusion_matrices, macro_f1

__all__ = ["single_label_metrics", "multilabel_metrics", "per_class_f1", "weighted_f1", "auroc", "best_threshold",
           "modality_gain"]


def per_class_f1(conf) -> tuple[np.ndarray, np.ndarray]:
    """(F1 per class in percent, present mask) of a ``(..., C, C)`` confusion matrix; a class
    is present when it is in the labels or the predictions (F1 0 where it is not).

    >>> f1, present = per_class_f1(confusion_matrices([0, 1, 1], [0, 0, 2], 4))
    >>> [round(float(v), 2) for v in f1], present.tolist()
    ([66.67, 0.0, 0.0, 0.0], [True, True, True, False])
    """
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    involved = conf.sum(-1) + conf.sum(-2)
    present = involved > 0
    return 100.0 * np.divide(2.0 * tp, involved, out=np.zeros_like(tp), where=present), present


def weighted_f1(conf) -> np.ndarray:
    """Per-class F1 averaged with weights = true support (sklearn ``average="weighted"``).

    >>> round(float(weighted_f1(confusion_matrices([0, 1, 1], [0, 0, 1], 2))), 4)
    66.6667
    """
    conf = np.asarray(conf, dtype=np.float64)
    f1, _ = per_class_f1(conf)
    support = conf.sum(-1)
    total = support.sum(-1)
    return np.divide((f1 * support).sum(-1), total, out=np.zeros_like(total), where=total > 0)


def auroc(labels, scores) -> float | None:
    """Area under the ROC curve in percent: the chance a random positive (label 1) scores above a
    random negative, ties counting one half; None when one class is missing (undefined).

    >>> auroc([0, 0, 1, 1], [0.1, 0.4, 0.4, 0.8])
    87.5
    """
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # mid-ranks (1-based) of tied groups
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    mid = first + (counts + 1) / 2.0
    ranks = np.empty_like(s)
    ranks[order] = np.repeat(mid, counts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(100.0 * u / (n_pos * n_neg))


def single_label_metrics(labels, preds, num_classes: int, pos_scores=None) -> dict:
    """acc, macro_f1, weighted_f1 (percent), per-class F1 (None for a class absent from labels
    and predictions) and the confusion matrix (rows true, columns predicted); for two classes
    also ``f1_pos`` and, given the scores for class 1, ``auroc``.

    >>> m = single_label_metrics([0, 1, 1, 0], [0, 1, 0, 0], 2, pos_scores=[0.2, 0.9, 0.4, 0.1])
    >>> m["acc"], round(m["macro_f1"], 2), round(m["f1_pos"], 2), m["auroc"], m["confusion"]
    (75.0, 73.33, 66.67, 100.0, [[2, 0], [1, 1]])
    """
    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    conf = confusion_matrices(labels, preds, num_classes)
    f1, present = per_class_f1(conf)
    out = {"acc": float(100.0 * np.trace(conf) / max(len(labels), 1)), "macro_f1": float(macro_f1(conf)),
           "weighted_f1": float(weighted_f1(conf)),
           "per_class_f1": [float(v) if p else None for v, p in zip(f1, present)], "confusion": conf.tolist()}
    if num_classes == 2:
        out["f1_pos"] = float(f1[1])
        if pos_scores is not None:
            out["auroc"] = auroc(labels, pos_scores)
    return out


def multilabel_metrics(truth, pred) -> dict:
    """Multi-label F1s in percent from 0/1 indicator matrices ``(items, labels)``: micro, macro,
    weighted (by true support), samples (per-item F1, averaged), the subset accuracy ``acc``,
    and per-label F1.

    >>> m = multilabel_metrics([[1, 0, 1], [0, 1, 0]], [[1, 0, 0], [0, 1, 1]])
    >>> [round(m[k], 2) for k in ("micro_f1", "macro_f1", "weighted_f1", "samples_f1", "acc")]
    [66.67, 66.67, 66.67, 66.67, 0.0]
    """
    t, p = np.asarray(truth, dtype=bool), np.asarray(pred, dtype=bool)
    if t.shape != p.shape or t.ndim != 2:
        raise ValueError(f"truth and pred must be (items, labels) of one shape: {t.shape} vs {p.shape}")
    tp = (t & p).sum(0).astype(np.float64)
    involved = t.sum(0) + p.sum(0)
    label_f1 = np.divide(2.0 * tp, involved, out=np.zeros_like(tp), where=involved > 0)
    support = t.sum(0).astype(np.float64)
    item_tp = (t & p).sum(1).astype(np.float64)
    item_involved = t.sum(1) + p.sum(1)
    item_f1 = np.divide(2.0 * item_tp, item_involved, out=np.zeros_like(item_tp), where=item_involved > 0)
    total_involved = involved.sum()
    return {
        "micro_f1": float(100.0 * 2.0 * tp.sum() / total_involved) if total_involved else 0.0,
        "macro_f1": float(100.0 * label_f1.mean()),
        "weighted_f1": float(100.0 * (label_f1 * support).sum() / support.sum()) if support.sum() else 0.0,
        "samples_f1": float(100.0 * item_f1.mean()),
        "acc": float(100.0 * (t == p).all(1).mean()),
        "per_class_f1": [float(100.0 * v) for v in label_f1],
    }


def best_threshold(scores, truth) -> float:
    """The decision threshold on ``scores`` (probabilities of one label) that maximises F1 of
    that label on held-out items; candidates are 0.5 and the midpoints between consecutive
    distinct scores; ties go to the candidate nearest 0.5 (the plain probe's rule).

    >>> best_threshold([0.1, 0.3, 0.35, 0.9], [0, 1, 1, 1])
    0.2
    """
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth).astype(bool)
    distinct = np.unique(s)
    candidates = np.concatenate([[0.5], (distinct[1:] + distinct[:-1]) / 2.0])
    pred = s[None, :] >= candidates[:, None]
    tp = (pred & t).sum(1)
    involved = pred.sum(1) + t.sum()
    f1 = np.divide(2.0 * tp, involved, out=np.zeros(len(candidates)), where=involved > 0)
    best = np.flatnonzero(np.isclose(f1, f1.max(), rtol=0, atol=1e-12))
    return float(round(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]], 12))


def modality_gain(acc: float, acc_image_only: float | None, acc_text_only: float | None) -> float | None:
    """``acc`` minus the better single-modality accuracy (None when neither was measured).

    >>> modality_gain(80.0, 55.0, 60.0)
    20.0
    """
    alone = [a for a in (acc_image_only, acc_text_only) if a is not None]
    return float(acc - max(alone)) if alone else None
