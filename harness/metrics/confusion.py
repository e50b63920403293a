"""Classification metrics from confusion matrices: pure numpy, batched over leading axes.

One definition serves both a run's numbers (``harness.metrics.functional.classification_metrics_from_preds``)
and the leaderboard's bootstrap intervals (``leaderboard.stats``, which resamples the stored
labels and predictions thousands of times and must not import torch), so a resampled macro-F1
is the same function as the recorded one.

Percent values, like the records. Classes absent from a (resampled) set are handled as
sklearn does by default: macro-F1 averages over classes present in the labels OR the
predictions, balanced accuracy over classes present in the labels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["confusion_matrices", "macro_f1", "balanced_accuracy"]


def confusion_matrices(labels, preds, num_classes: int) -> np.ndarray:
    """Counts ``conf[..., true, predicted]`` over the last axis of ``labels`` / ``preds``.

    Both are integer arrays of one shape ``(..., n)`` with values in ``[0, num_classes)``;
    leading axes are independent sets (e.g. bootstrap resamples), giving ``(..., C, C)``.

    >>> confusion_matrices([0, 1, 1], [0, 0, 1], 2).tolist()
    [[1, 0], [1, 1]]
    >>> confusion_matrices([[0, 0], [1, 1]], [[0, 1], [1, 1]], 2)[:, 1, 1].tolist()
    [0, 2]
    """
    labels, preds = np.asarray(labels), np.asarray(preds)
    if labels.shape != preds.shape or labels.ndim == 0:
        raise ValueError(f"labels and preds must have one shape (..., n): {labels.shape} vs {preds.shape}")
    for name, arr in (("labels", labels), ("preds", preds)):
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must be integer class ids, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got [{arr.min()}, {arr.max()}]")
    lead = labels.shape[:-1]
    sets = int(np.prod(lead, dtype=np.int64))
    c2 = num_classes * num_classes
    offset = np.arange(sets, dtype=np.int64).reshape(*lead, 1) * c2
    flat = (offset + labels.astype(np.int64) * num_classes + preds).ravel()
    return np.bincount(flat, minlength=sets * c2).reshape(*lead, num_classes, num_classes)


def macro_f1(conf) -> np.ndarray:
    """Mean per-class F1 = 2TP / (2TP + FP + FN), in percent, over the classes present in the
    labels or the predictions (a class with neither is left out; one predicted but never
    true, or true but never predicted, counts with F1 = 0). ``(..., C, C)`` -> ``(...)``.

    >>> round(float(macro_f1(confusion_matrices([0, 1, 1, 1], [0, 0, 1, 2], 4))), 4)  # class 3 absent
    38.8889
    """
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    involved = conf.sum(-1) + conf.sum(-2)            # 2TP + FP + FN = support + predicted
    present = involved > 0
    f1 = np.divide(2.0 * tp, involved, out=np.zeros_like(tp), where=present)
    return 100.0 * f1.sum(-1) / present.sum(-1)


def balanced_accuracy(conf) -> np.ndarray:
    """Mean per-class recall, in percent, over the classes present in the labels (a class
    only ever predicted does not count). ``(..., C, C)`` -> ``(...)``.

    >>> round(float(balanced_accuracy(confusion_matrices([0, 1, 1, 1], [0, 0, 1, 2], 4))), 4)
    66.6667
    """
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    support = conf.sum(-1)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    return 100.0 * recall.sum(-1) / present.sum(-1)
