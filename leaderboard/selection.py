"""Intervals and paired tests for caption selection, from the per-item sidecar (no model re-run).

Items are resampled *within their subset* (a stratified bootstrap: each part of a benchmark
keeps its size, as the benchmark fixes it), and every resample goes through the very function
the run's numbers came from (:func:`harness.metrics.selection.selection_metrics`), so ``acc``
(the macro mean), ``acc_<subset>``, the ARO macro/micro pair and pooled keys all get intervals.
Winoground's text / image / group scores resample groups.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from harness.metrics import selection as CM
from harness.metrics.keys import QueryKey

from . import stats

GROUP_KEYS = (CM.TEXT_SCORE, CM.IMAGE_SCORE, CM.GROUP_SCORE)


def _items(queries: dict) -> tuple | None:
    if QueryKey.CS_CORRECT.value not in queries:
        return None
    correct = np.asarray(queries[QueryKey.CS_CORRECT.value], dtype=np.float64)
    subset = np.asarray(queries[QueryKey.CS_SUBSET.value], dtype=np.int64)
    category = np.asarray(queries[QueryKey.CS_CATEGORY.value], dtype=np.int64)
    if not (correct.shape == subset.shape == category.shape) or correct.ndim != 1 or not correct.size:
        raise ValueError("cs_correct / cs_subset / cs_category must be equally long, non-empty lists")
    spec = CM.SelectionSpec.from_json(np.asarray(queries[QueryKey.CS_SPEC.value], dtype=object).ravel()[0])
    categories = [str(c) for c in np.asarray(queries.get(QueryKey.CS_CATEGORIES.value, []), dtype=object).ravel()]
    return correct, subset, category, spec, categories


def _strata(subset: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(subset == k) for k in np.unique(subset)]


def _resample(strata: list[np.ndarray], rng) -> np.ndarray:
    return np.concatenate([s[rng.integers(0, len(s), len(s))] for s in strata])


def selection_cis(queries: dict, wanted, n_boot: int = 1000, seed: int = 0,
                  alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """``{metric: (low, high)}`` for the wanted caption-selection metrics the sidecar supports.

    >>> q = {"cs_correct": [1] * 20 + [0] * 20, "cs_subset": [0] * 20 + [1] * 20, "cs_category": [-1] * 40,
    ...      "cs_subsets": ["a", "b"], "cs_categories": [], "cs_spec": [{"subsets": ["a", "b"]}]}
    >>> selection_cis(q, ["acc", "acc_a"])
    {'acc_a': (100.0, 100.0), 'acc': (50.0, 50.0)}
    """
    out: dict[str, tuple[float, float]] = {}
    for key, values in selection_replicates(queries, wanted, n_boot, seed).items():
        lo, hi = np.nanquantile(values, [alpha / 2, 1 - alpha / 2])
        out[key] = (float(lo), float(hi))
    return out


def selection_replicates(queries: dict, wanted, n_boot: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """``{metric: (n_boot,) bootstrap values}`` behind :func:`selection_cis` (NaN where a
    resample leaves a metric undefined), for the wanted metrics the sidecar supports."""
    wanted = list(wanted)
    out: dict[str, np.ndarray] = {}
    items = _items(queries)
    if items is not None:
        correct, subset, category, spec, categories = items
        strata, rng = _strata(subset), np.random.default_rng(seed)
        boots: dict[str, list[float]] = defaultdict(list)
        for _ in range(n_boot):
            idx = _resample(strata, rng)
            for key, value in CM.selection_metrics(correct[idx], subset[idx], category[idx], spec, categories).items():
                if key in wanted:
                    boots[key].append(value)
        out.update({key: np.asarray(values, dtype=np.float64) for key, values in boots.items()})
    for key in GROUP_KEYS:
        if key in wanted and key in queries and np.asarray(queries[key]).size:
            hits = 100.0 * np.asarray(queries[key]).astype(bool).astype(np.float64)
            out[key] = stats._resampled_stats(hits, stats._mean, n_boot, seed)  # accuracy_ci's draws
    return out


def selection_lead_pvalue(a: dict | None, b: dict | None, metric: str, n_boot: int = 1000,
                          seed: int = 0) -> float | None:
    """Paired stratified bootstrap p-value of ``a``'s lead on ``metric`` over ``b`` (same items in
    the same order, checked by subset); None when either sidecar lacks the outcomes."""
    if not a or not b:
        return None
    if metric in GROUP_KEYS:
        if metric not in a or metric not in b or np.asarray(a[metric]).shape != np.asarray(b[metric]).shape:
            return None
        return stats.paired_bootstrap_pvalue(np.asarray(a[metric], dtype=float), np.asarray(b[metric], dtype=float),
                                             n_boot=n_boot, seed=seed)
    ia, ib = _items(a), _items(b)
    if ia is None or ib is None or ia[0].shape != ib[0].shape or not np.array_equal(ia[1], ib[1]):
        return None

    def value(items, idx) -> float:
        correct, subset, category, spec, categories = items
        return CM.selection_metrics(correct[idx], subset[idx], category[idx], spec, categories).get(metric, np.nan)

    everything = np.arange(ia[0].size)
    observed = value(ia, everything) - value(ib, everything)
    if not np.isfinite(observed):
        return None
    if observed == 0:
        return 1.0
    strata, rng = _strata(ia[1]), np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for k in range(n_boot):
        idx = _resample(strata, rng)
        diffs[k] = value(ia, idx) - value(ib, idx)
    return stats._two_sided_p(observed, diffs)


def caption_columns(rows) -> list[str]:
    """A caption-selection table's metric columns with values: ``acc``, Winoground's three
    scores, then each ``acc_<...>`` in name order (pandas rows; no interval columns).

    >>> import pandas as pd
    >>> caption_columns(pd.DataFrame({"acc_b": [1.0], "acc": [2.0], "group_score": [None], "acc_a_lo": [0.0]}))
    ['acc', 'acc_b']
    """
    from harness.metrics.keys import is_caption_selection_key

    filled = [c for c in rows.columns if is_caption_selection_key(c) and rows[c].notna().any()]
    head = [k for k in (CM.ACC, *GROUP_KEYS) if k in filled]
    return head + sorted(c for c in filled if c not in head)
