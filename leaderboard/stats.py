"""Uncertainty for leaderboard numbers: bootstrap intervals and paired significance tests.

Everything works on per-query outcomes (the ``<record>.queries.json`` sidecar written by
``harness.results.store.save``): retrieval keeps ``t2i_rank`` / ``i2t_rank`` (1-based first-hit
ranks) and, per hard-negative key, ``[wins, checks]`` per independent group of comparisons;
zero-shot keeps ``correct`` (bools), ``pred`` and ``label`` (class ids). Resampling is over
queries (groups, for hard negatives), so an interval says how much a number would move on
another draw of the same size. Means of per-query outcomes go through the 1-D functions;
any other statistic of resampled rows (macro-F1 and balanced accuracy of (label, pred)
rows, a pooled rate of (wins, checks) rows) through :func:`units_ci` /
:func:`paired_units_pvalue`, which draw the same indices for the same seed and size.

Numbers are in the records' units: recall and accuracy are percentages (0-100 points).
numpy only; nothing here imports torch.

    >>> lo, hi = accuracy_ci(np.ones(50, dtype=bool))
    >>> float(lo), float(hi)
    (100.0, 100.0)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from harness.metrics import confusion
from harness.metrics.keys import MetricKey
from harness.results.store import QUERIES_SUFFIX, queries_path, read_record

__all__ = [
    "accuracy_ci", "bootstrap_ci", "classification_cis", "classification_rows", "classification_statistic",
    "group_rows", "load_queries",
    "paired_bootstrap_pvalue", "paired_sum_pvalue", "paired_units_pvalue", "pooled_rate", "pooled_rate_ci",
    "recall_at_k_ci", "recall_cis", "rsum_parts", "sidecar_path", "significant", "sum_of_means_ci", "units_ci",
]

Statistic = Callable[[np.ndarray], np.ndarray]

# Resampled values held at once (one block of the n_boot x n index matrix, int64 indices
# plus the gathered values): ~2M elements, a few tens of MB at most.
BLOCK_ELEMENTS = 2**21


def _mean(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=-1)


def _as_1d(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of per-query outcomes, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: no queries (empty array)")
    return arr.astype(np.float64) if arr.dtype == bool else arr


def _resampled_stats(values: np.ndarray, statistic: Statistic, n_boot: int, seed: int,
                     width: int | None = None) -> np.ndarray:
    """``statistic`` of ``n_boot`` resamples (with replacement) of ``values`` along axis 0.

    Indices are drawn block by block (rows of the n_boot x n matrix) from one
    ``np.random.default_rng(seed)``, so a fixed seed gives the same numbers every time.
    ``statistic`` receives a ``(block, n, ...)`` array and reduces axis 1 (the queries) to
    ``(block,)``, or to ``(block, width)`` when several statistics share the resamples.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    block = max(1, BLOCK_ELEMENTS // n)
    shape = (n_boot,) if width is None else (n_boot, width)
    out = np.empty(shape, dtype=np.float64)
    for start in range(0, n_boot, block):
        stop = min(start + block, n_boot)
        idx = rng.integers(0, n, size=(stop - start, n))
        res = np.asarray(statistic(values[idx]), dtype=np.float64)
        if res.shape != (stop - start, *shape[1:]):
            raise ValueError(f"statistic must reduce a (b, n) array to shape {(stop - start, *shape[1:])}, "
                             f"got {res.shape}")
        out[start:stop] = res
    return out


def bootstrap_ci(per_query: np.ndarray, statistic: Statistic | None = None, n_boot: int = 1000,
                 seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` interval at level ``1 - alpha`` over queries.

    ``statistic`` is vectorised: it gets a ``(b, n)`` array of resamples and returns ``(b,)``
    (reduce the last axis), e.g. ``lambda s: s.mean(axis=-1)``; the default is the mean.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    values = _as_1d(per_query, "per_query")
    stat = statistic or _mean
    boots = _resampled_stats(values, stat, n_boot, seed)
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def recall_at_k_ci(ranks, k: int, n_boot: int = 1000, seed: int = 0,
                   alpha: float = 0.05) -> tuple[float, float]:
    """Interval for recall@k in points (``100 * mean(ranks <= k)``) from 1-based first-hit ranks."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    hits = _as_1d(ranks, "ranks") <= k
    return bootstrap_ci(hits.astype(np.float64) * 100.0, n_boot=n_boot, seed=seed, alpha=alpha)


def recall_cis(ranks, ks=(1, 5, 10), n_boot: int = 1000, seed: int = 0,
               alpha: float = 0.05) -> dict[int, tuple[float, float]]:
    """``{k: recall_at_k_ci(ranks, k, ...)}`` for several k from one set of resamples: the
    same numbers as separate calls with the same seed, at the cost of one.

    >>> recall_cis(np.full(20, 3), ks=(1, 5))
    {1: (0.0, 0.0), 5: (100.0, 100.0)}
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if any(k < 1 for k in ks):
        raise ValueError(f"k must be >= 1, got {list(ks)}")
    values = _as_1d(ranks, "ranks")
    kk = np.asarray(ks)

    def stat(samples: np.ndarray) -> np.ndarray:  # (b, n) ranks -> (b, len(ks)) recalls in points
        return np.stack([(100.0 * (samples <= k)).mean(axis=-1) for k in kk], axis=-1)

    boots = _resampled_stats(values, stat, n_boot, seed, width=len(kk))
    bounds = np.quantile(boots, [alpha / 2, 1 - alpha / 2], axis=0)
    return {int(k): (float(bounds[0, i]), float(bounds[1, i])) for i, k in enumerate(kk)}


def accuracy_ci(correct, n_boot: int = 1000, seed: int = 0,
                alpha: float = 0.05) -> tuple[float, float]:
    """Interval for accuracy in points (``100 * mean(correct)``)."""
    hits = _as_1d(correct, "correct").astype(np.float64)
    return bootstrap_ci(hits * 100.0, n_boot=n_boot, seed=seed, alpha=alpha)


def paired_bootstrap_pvalue(a, b, n_boot: int = 1000, seed: int = 0) -> float:
    """Two-sided paired bootstrap p-value for ``mean(a) == mean(b)``.

    ``a`` and ``b`` are two models' outcomes on the same queries in the same order (hits,
    correct flags, or any per-query score). Query indices are resampled jointly; p is the
    fraction of bootstrap mean differences on the other side of zero from the observed one
    (ties with zero count against significance), with the +1 correction, doubled, capped at 1.
    The smallest reachable p is ``2 / (n_boot + 1)``.
    """
    a_arr, b_arr = _as_1d(a, "a"), _as_1d(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(
            f"paired test needs outcomes on the same queries: a has {a_arr.shape[0]} queries, "
            f"b has {b_arr.shape[0]} (same length and same query order required)")
    diff = a_arr.astype(np.float64) - b_arr.astype(np.float64)
    observed = diff.mean()
    if observed == 0:
        return 1.0
    return _two_sided_p(observed, _resampled_stats(diff, _mean, n_boot, seed))


def _two_sided_p(observed: float, boots: np.ndarray) -> float:
    """Share of bootstrap differences on the other side of zero from ``observed`` (ties with
    zero count against significance), +1 corrected, doubled, capped at 1."""
    other_side = np.count_nonzero(boots <= 0) if observed > 0 else np.count_nonzero(boots >= 0)
    return float(min(1.0, 2.0 * (other_side + 1) / (boots.shape[0] + 1)))


def significant(a, b, alpha: float = 0.05, n_boot: int = 1000, seed: int = 0) -> bool:
    """True when the paired bootstrap rejects ``mean(a) == mean(b)`` at level ``alpha``."""
    return paired_bootstrap_pvalue(a, b, n_boot=n_boot, seed=seed) < alpha


def _part_seeds(seed: int, n_parts: int) -> list[int]:
    """One seed per independently resampled query set; one part keeps ``seed`` itself, so
    a single-part call gives exactly the numbers of the one-set functions above."""
    if n_parts == 1:
        return [seed]
    children = np.random.SeedSequence(seed).spawn(n_parts)
    return [int(c.generate_state(1)[0]) for c in children]


def _sum_of_means(parts, n_boot: int, seed: int) -> np.ndarray:
    parts = [_as_1d(p, f"parts[{i}]").astype(np.float64) for i, p in enumerate(parts)]
    if not parts:
        raise ValueError("parts: at least one query set is needed")
    seeds = _part_seeds(seed, len(parts))
    return sum(_resampled_stats(p, _mean, n_boot, s) for p, s in zip(parts, seeds))


def sum_of_means_ci(parts, n_boot: int = 1000, seed: int = 0,
                    alpha: float = 0.05) -> tuple[float, float]:
    """Interval for ``sum(mean(p) for p in parts)`` where each part is a separate query set,
    resampled independently (RSUM: text->image captions and image->text images).

    >>> sum_of_means_ci([np.full(10, 2.0), np.full(4, 3.0)])
    (5.0, 5.0)
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    boots = _sum_of_means(parts, n_boot, seed)
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_sum_pvalue(a_parts, b_parts, n_boot: int = 1000, seed: int = 0) -> float:
    """Paired bootstrap p-value for a sum of per-set means (e.g. RSUM) between two models on
    the same query sets: each set's per-query differences are resampled on their own, the
    same way as ``paired_bootstrap_pvalue`` (which this equals for a single set)."""
    if len(a_parts) != len(b_parts):
        raise ValueError(f"paired test needs the same query sets: {len(a_parts)} vs {len(b_parts)}")
    diffs = []
    for i, (a, b) in enumerate(zip(a_parts, b_parts)):
        a_arr, b_arr = _as_1d(a, f"a[{i}]"), _as_1d(b, f"b[{i}]")
        if a_arr.shape != b_arr.shape:
            raise ValueError(
                f"paired test needs outcomes on the same queries: set {i} has {a_arr.shape[0]} "
                f"queries for a and {b_arr.shape[0]} for b")
        diffs.append(a_arr.astype(np.float64) - b_arr.astype(np.float64))
    observed = sum(d.mean() for d in diffs)
    if observed == 0:
        return 1.0
    return _two_sided_p(observed, _sum_of_means(diffs, n_boot, seed))


def _as_units(values, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(f"{name}: no units to resample (empty array)")
    return arr


def units_ci(units, statistic: Statistic, n_boot: int = 1000, seed: int = 0,
             alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval for ``statistic`` of resampled rows of ``units`` (axis 0).

    ``statistic`` gets a ``(b, n, ...)`` array of resamples and returns ``(b,)``. For 1-D
    outcomes and the mean it gives :func:`bootstrap_ci`'s numbers (the same index draws).

    >>> units_ci(np.array([[3, 4], [1, 4]]), pooled_rate, n_boot=200, seed=0)
    (25.0, 75.0)
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    boots = _resampled_stats(_as_units(units, "units"), statistic, n_boot, seed)
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_units_pvalue(a_units, b_units, statistic: Statistic, n_boot: int = 1000, seed: int = 0) -> float:
    """Two-sided paired bootstrap p-value for ``statistic(a) == statistic(b)`` where ``a`` and
    ``b`` are two models' rows on the same units in the same order: the row indices are
    resampled jointly and the p-value is read off ``statistic(a*) - statistic(b*)`` as in
    :func:`paired_bootstrap_pvalue` (whose numbers it gives for the mean of 0/100 outcomes)."""
    a, b = _as_units(a_units, "a"), _as_units(b_units, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired test needs outcomes on the same units: a has shape {a.shape}, b has {b.shape}")
    observed = float(statistic(a[None])[0] - statistic(b[None])[0])
    if observed == 0:
        return 1.0

    def difference(idx: np.ndarray) -> np.ndarray:  # (block, n) indices -> (block,)
        return statistic(a[idx]) - statistic(b[idx])

    return _two_sided_p(observed, _resampled_stats(np.arange(a.shape[0]), difference, n_boot, seed))


def pooled_rate(samples: np.ndarray) -> np.ndarray:
    """``100 * sum(wins) / sum(checks)`` of ``(..., n, 2)`` rows of ``[wins, checks]``
    (the hard negatives' groups): ``(...)``.

    >>> pooled_rate(np.array([[3, 4], [4, 4]])).item()
    87.5
    """
    samples = np.asarray(samples, dtype=np.float64)
    return 100.0 * samples[..., 0].sum(-1) / samples[..., 1].sum(-1)


def pooled_rate_ci(groups, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                   name: str = "groups") -> tuple[float, float]:
    """Interval for a pooled success rate in points from ``(n, 2)`` rows ``[wins, checks]``,
    resampling rows (groups of comparisons that share images; see
    ``harness.tasks.hard_negatives.comparison_groups``).

    >>> pooled_rate_ci([[4, 8]] * 30)
    (50.0, 50.0)
    """
    rows = group_rows(groups, name)
    return units_ci(rows, pooled_rate, n_boot=n_boot, seed=seed, alpha=alpha)


def group_rows(groups, name: str) -> np.ndarray:
    rows = _as_units(groups, name)
    if rows.ndim != 2 or rows.shape[1] != 2 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"{name}: expected integer [wins, checks] rows, got shape {rows.shape} ({rows.dtype})")
    if (rows[:, 1] <= 0).any() or (rows[:, 0] < 0).any() or (rows[:, 0] > rows[:, 1]).any():
        raise ValueError(f"{name}: every row needs 0 <= wins <= checks and checks > 0")
    return rows


# what a (label, pred) resample is turned into, in this order
CLASSIFICATION_METRICS = {MetricKey.MACRO_F1.value: confusion.macro_f1,
                          MetricKey.BALANCED_ACC.value: confusion.balanced_accuracy}


def classification_statistic(samples: np.ndarray) -> np.ndarray:
    """Macro-F1 and balanced accuracy (``harness.metrics.confusion``, the functions the run's numbers
    come from) of ``(b, n, 2)`` resampled ``[label, pred]`` rows: ``(b, 2)``.

    Classes absent from a resample drop out exactly as they do from the metric (a class
    neither true nor predicted in it is not averaged), so the class count only sizes the
    confusion matrices; they are built a block at a time to bound memory at many classes.
    """
    n_classes = int(samples.max()) + 1
    out = np.empty((samples.shape[0], len(CLASSIFICATION_METRICS)), dtype=np.float64)
    step = max(1, BLOCK_ELEMENTS // (n_classes * n_classes))
    for start in range(0, samples.shape[0], step):
        chunk = samples[start:start + step]
        conf = confusion.confusion_matrices(chunk[..., 0], chunk[..., 1], n_classes)
        for i, metric in enumerate(CLASSIFICATION_METRICS.values()):
            out[start:start + step, i] = metric(conf)
    return out


def classification_rows(labels, preds) -> np.ndarray:
    """``(n, 2)`` rows ``[label, pred]`` from two per-sample lists of class ids (checked)."""
    lab, pred = _as_1d(labels, "labels"), _as_1d(preds, "preds")
    if lab.shape != pred.shape:
        raise ValueError(f"labels and preds must have one entry per sample: {lab.shape[0]} vs {pred.shape[0]}")
    for name, arr in (("labels", lab), ("preds", pred)):
        if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0:
            raise ValueError(f"{name}: expected non-negative integer class ids, got {arr.dtype}")
    return np.stack([lab, pred], axis=1)


def classification_cis(labels, preds, n_boot: int = 1000, seed: int = 0,
                       alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Intervals for macro-F1 and balanced accuracy in points, resampling samples; both
    from one set of resamples (the numbers of separate :func:`units_ci` calls).

    >>> classification_cis([0, 1, 2] * 10, [0, 1, 2] * 10)
    {'macro_f1': (100.0, 100.0), 'balanced_acc': (100.0, 100.0)}
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    rows = classification_rows(labels, preds)
    boots = _resampled_stats(rows, classification_statistic, n_boot, seed, width=len(CLASSIFICATION_METRICS))
    bounds = np.quantile(boots, [alpha / 2, 1 - alpha / 2], axis=0)
    return {key: (float(bounds[0, i]), float(bounds[1, i])) for i, key in enumerate(CLASSIFICATION_METRICS)}


def rsum_parts(t2i_rank, i2t_rank, ks=(1, 5, 10)) -> list[np.ndarray]:
    """Per-query RSUM contributions: ``100 * #{k : rank <= k}`` per direction, so that
    RSUM = mean(t2i part) + mean(i2t part).

    >>> [p.tolist() for p in rsum_parts([1, 6], [11])]
    [[300.0, 100.0], [0.0]]
    """
    return [100.0 * sum((_as_1d(r, name) <= k).astype(np.float64) for k in ks)
            for r, name in ((t2i_rank, "t2i_rank"), (i2t_rank, "i2t_rank"))]


def sidecar_path(record_path: str | Path) -> Path:
    """``.../name.json`` -> ``.../name.queries.json`` (the path ``harness.results.store.save`` writes)."""
    return queries_path(Path(record_path))


def load_queries(record_path: str | Path) -> dict[str, np.ndarray]:
    """Per-query outcomes stored beside a record, as arrays keyed like the sidecar
    (retrieval: ``t2i_rank``, ``i2t_rank``; zero-shot: ``correct``, ``pred``).

    Raises FileNotFoundError naming the sidecar when it is missing, and ValueError when it
    is unreadable or its ``run_key`` is not the record's (a stale file from another run).
    """
    path = Path(record_path)
    if path.name.endswith(QUERIES_SUFFIX):  # given the sidecar itself: find its record
        path = path.with_name(path.name[: -len(QUERIES_SUFFIX)] + ".json")
    side = sidecar_path(path)
    if not side.is_file():
        raise FileNotFoundError(
            f"{side}: no per-query outcomes for record {path} (the run was saved without "
            f"per_query; re-run it to get confidence intervals)")
    record = read_record(path)
    try:
        raw = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{side}: unreadable per-query file ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{side}: expected a JSON object, got {type(raw).__name__}")
    key = raw.get("run_key")
    if key != record.run_key:
        raise ValueError(f"{side}: run_key {key!r} does not match record {path} "
                         f"(run_key {record.run_key!r}); the per-query file is from another run")
    return {name: np.asarray(values) for name, values in raw.items() if name != "run_key"}
