"""Uncertainty columns for the leaderboard frame, from the per-query sidecars (no model re-run).

``annotate(df)`` adds, per row, bootstrap intervals (``<metric>_lo`` / ``<metric>_hi``) for the
recalls, RSUM, acc1, macro-F1, balanced accuracy and the hard-negative accuracies (``hn_*``),
and, per (task, dataset, split) table ordered by the main metric, a paired bootstrap test of
each row's lead over the next row (``lead_p``, ``lead_over``, ``lead_significant``). Rows
without a readable sidecar get missing values and a ``queries_note`` saying why; a sidecar
from before a metric's outcomes were kept (zero-shot ``label``, ``hn_*`` groups) simply
gives that metric no interval. A pair on different data (fingerprint or query count) is not tested.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.metrics.keys import KENDALL_KEYS, MetricKey, QueryKey, is_caption_selection_key, is_hard_negative_key

from . import selection, stats
from .captioning import bleu_units, caption_parts, has_caption_interval

RECALL_METRICS = [k.value for k in (MetricKey.T2I_R1, MetricKey.T2I_R5, MetricKey.T2I_R10,
                                    MetricKey.I2T_R1, MetricKey.I2T_R5, MetricKey.I2T_R10)]
CLASSIFICATION_METRICS = list(stats.CLASSIFICATION_METRICS)  # macro_f1, balanced_acc
KENDALL_METRICS = list(KENDALL_KEYS.values())  # human_agreement: images resampled, tau recomputed
CI_METRICS = [*RECALL_METRICS, MetricKey.RSUM.value, MetricKey.ACC1.value, *CLASSIFICATION_METRICS, *KENDALL_METRICS]
GROUP = ["task", "dataset", "split_view"]  # split_view: a --limit subset is its own table


def has_interval(metric: str) -> bool:
    """Whether ``annotate`` can give ``metric`` an interval: the fixed ones, every ``hn_*`` and
    the caption-selection keys (``acc``, ``acc_<subset>``, Winoground's scores)."""
    return (metric in CI_METRICS or is_hard_negative_key(metric) or is_caption_selection_key(metric)
            or has_caption_interval(metric))


def interval_metrics(columns) -> list[str]:
    """The metrics of a frame's columns that get ``_lo`` / ``_hi`` columns, in order."""
    return [*CI_METRICS, *(c for c in columns if (is_hard_negative_key(c) or is_caption_selection_key(c)
                                                  or has_caption_interval(c))
                           and c not in CI_METRICS and not str(c).endswith(("_lo", "_hi")))]


@dataclass(frozen=True)
class UncertaintyOptions:
    n_boot: int = 1000     # bootstrap resamples per interval / test
    seed: int = 0          # fixed: the page is reproducible
    alpha: float = 0.05    # 95% intervals; a lead with p >= alpha is marked not significant


class QueryCache:
    """Per-query outcomes by record path, read once; a missing or stale sidecar is remembered
    with its reason instead of raising (a page still renders without intervals)."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, np.ndarray] | None] = {}
        self.reasons: dict[str, str] = {}

    def get(self, path: str | None) -> dict[str, np.ndarray] | None:
        if not path or path.startswith("record #"):
            return None
        if path not in self._data:
            try:
                self._data[path] = stats.load_queries(Path(path))
            except FileNotFoundError:
                self._data[path] = None
                self.reasons[path] = "no per-query file"
            except (ValueError, OSError) as exc:
                self._data[path] = None
                self.reasons[path] = f"{UNUSABLE}: {exc}"
        return self._data[path]


def metric_parts(queries: dict[str, np.ndarray] | None, metric: str) -> list[np.ndarray] | None:
    """Per-query outcomes (in points) whose sum of means is ``metric``; None if not derivable.

    >>> metric_parts({"t2i_rank": np.array([1, 3])}, "t2i_R@1")[0].tolist()
    [100.0, 0.0]
    """
    if not queries:
        return None
    if metric in RECALL_METRICS:
        direction, k = metric.split("_R@")
        ranks = queries.get(f"{direction}_rank")
        return None if ranks is None or ranks.size == 0 else [100.0 * (ranks <= int(k))]
    if metric == MetricKey.RSUM:
        t2i, i2t = queries.get(QueryKey.T2I_RANK.value), queries.get(QueryKey.I2T_RANK.value)
        if t2i is None or i2t is None or not t2i.size or not i2t.size:
            return None
        return stats.rsum_parts(t2i, i2t)
    if metric == MetricKey.ACC1:
        correct = queries.get(QueryKey.CORRECT.value)
        return None if correct is None or correct.size == 0 else [100.0 * correct.astype(np.float64)]
    return caption_parts(queries, metric)  # captioning: per-image scores whose mean is the metric


@dataclass(frozen=True)
class Units:
    """Resampling units of a metric that is not a mean of per-query outcomes: ``rows`` along
    axis 0, ``statistic`` turns ``(b, n, ...)`` resampled rows into ``(b,)`` values."""

    rows: np.ndarray
    statistic: stats.Statistic


def metric_units(queries: dict[str, np.ndarray] | None, metric: str) -> Units | None:
    """Rows and statistic for macro-F1 / balanced accuracy (``[label, pred]`` per sample) and
    hard negatives (``[wins, checks]`` per group); None when the sidecar does not have them
    (one written before they were kept) or ``metric`` is another one.

    >>> u = metric_units({"label": np.array([0, 1, 1]), "pred": np.array([0, 0, 1])}, "balanced_acc")
    >>> u.rows.tolist(), u.statistic(u.rows[None]).tolist()
    ([[0, 0], [1, 0], [1, 1]], [75.0])
    """
    if not queries:
        return None
    if metric in CLASSIFICATION_METRICS:
        labels, preds = queries.get(QueryKey.LABEL.value), queries.get(QueryKey.PRED.value)
        if labels is None or preds is None or labels.size == 0:
            return None
        column = CLASSIFICATION_METRICS.index(metric)
        return Units(stats.classification_rows(labels, preds),
                     lambda samples: stats.classification_statistic(samples)[:, column])
    if is_hard_negative_key(metric):
        groups = queries.get(metric)
        if groups is None or groups.size == 0:
            return None
        return Units(stats.group_rows(groups, metric), stats.pooled_rate)
    bleu = bleu_units(queries, metric)  # captioning: corpus BLEU of resampled images' statistics
    return None if bleu is None else Units(*bleu)


UNUSABLE = "per-query file unusable"


def unusable_notes(rows: pd.DataFrame) -> list[tuple[str, str]]:
    """(row label, why) for rows whose per-query file exists but cannot be used (truncated,
    stale, malformed): their intervals and lead tests are missing, and the page must say so
    rather than show the row as if it had none to give. A missing file is the ordinary case
    of a record saved without one and is left to the legend."""
    if "queries_note" not in rows.columns:
        return []
    return [(str(r["label"]), str(r["queries_note"])) for _, r in rows.iterrows()
            if isinstance(r["queries_note"], str) and r["queries_note"].startswith(UNUSABLE)]


def annotate(df: pd.DataFrame, opts: UncertaintyOptions = UncertaintyOptions(),
             cache: QueryCache | None = None) -> pd.DataFrame:
    """``df`` plus interval, lead-test and note columns (index and row order kept)."""
    cache = cache or QueryCache()
    out = df.copy()
    for metric in interval_metrics(df.columns):
        out[f"{metric}_lo"] = np.nan
        out[f"{metric}_hi"] = np.nan
    out["lead_p"] = np.nan
    out["lead_over"] = pd.Series(pd.NA, index=out.index, dtype="string")
    out["lead_significant"] = pd.Series(pd.NA, index=out.index, dtype="boolean")
    out["queries_note"] = pd.Series(pd.NA, index=out.index, dtype="string")
    for idx, row in df.iterrows():
        queries = cache.get(row["path"])
        if queries is None:
            out.at[idx, "queries_note"] = cache.reasons.get(row["path"], "no per-query file")
            continue
        try:
            intervals = _intervals(queries, row, opts)
        except ValueError as exc:  # outcomes that do not fit the metric: say so, render the rest
            out.at[idx, "queries_note"] = f"{UNUSABLE}: {exc}"
            continue
        for metric, (lo, hi) in intervals.items():
            out.at[idx, f"{metric}_lo"], out.at[idx, f"{metric}_hi"] = lo, hi
    for _, group in df.groupby(GROUP, dropna=False, sort=False):
        _lead_tests(group, out, opts, cache)
    return out


def _intervals(queries: dict[str, np.ndarray], row: pd.Series,
               opts: UncertaintyOptions) -> dict[str, tuple[float, float]]:
    """Intervals for the metrics the row reports; the recalls of one direction share their
    resamples (``stats.recall_cis``: the numbers of separate calls, at a third of the cost),
    and so do macro-F1 and balanced accuracy (``stats.classification_cis``)."""
    wanted = [m for m in interval_metrics(row.index) if m in row.index and not pd.isna(row[m])]
    boot = {"n_boot": opts.n_boot, "seed": opts.seed, "alpha": opts.alpha}
    out: dict[str, tuple[float, float]] = {}
    for direction in ("t2i", "i2t"):
        ranks = queries.get(f"{direction}_rank")
        ks = [int(m.split("@")[1]) for m in wanted if m.startswith(f"{direction}_R@")]
        if ks and ranks is not None and ranks.size:
            cis = stats.recall_cis(ranks, ks, **boot)
            out.update({f"{direction}_R@{k}": ci for k, ci in cis.items()})
    for metric in (MetricKey.RSUM.value, MetricKey.ACC1.value):
        parts = metric_parts(queries, metric) if metric in wanted else None
        if parts is not None:
            out[metric] = stats.sum_of_means_ci(parts, **boot)
    labels, preds = queries.get(QueryKey.LABEL.value), queries.get(QueryKey.PRED.value)
    if labels is not None and preds is not None and labels.size and set(CLASSIFICATION_METRICS) & set(wanted):
        cis = stats.classification_cis(labels, preds, **boot)
        out.update({m: ci for m, ci in cis.items() if m in wanted})
    for metric in (m for m in wanted if has_caption_interval(m)):
        parts, bleu = caption_parts(queries, metric), bleu_units(queries, metric)
        if parts is not None:
            out[metric] = stats.sum_of_means_ci(parts, **boot)
        elif bleu is not None:
            out[metric] = stats.units_ci(*bleu, **boot)
    caption_keys = [m for m in wanted if is_caption_selection_key(m)]
    if caption_keys:  # resampled items within subsets, through the run's own metric function
        out.update(selection.selection_cis(queries, caption_keys, **boot))
    out.update(_kendall_cis(queries, wanted, boot))
    for metric in wanted:
        groups = queries.get(metric) if is_hard_negative_key(metric) else None
        if groups is not None and groups.size:
            out[metric] = stats.pooled_rate_ci(groups, **boot, name=metric)
    return out


def _kendall_cis(queries: dict[str, np.ndarray], wanted: list[str], boot: dict) -> dict[str, tuple[float, float]]:
    """Kendall tau x 100 intervals resampling query images (``group``), from the per-row
    model scores and human scores of a human_agreement sidecar."""
    from harness.metrics.agreement import grouped_tau_ci

    score, human, group = (queries.get(k.value) for k in (QueryKey.SCORE, QueryKey.HUMAN, QueryKey.GROUP))
    if score is None or human is None or group is None or not score.size:
        return {}
    return {key: grouped_tau_ci(score, human, group, variant, **boot)
            for variant, key in KENDALL_KEYS.items() if key in wanted}


def _lead_tests(group: pd.DataFrame, out: pd.DataFrame, opts: UncertaintyOptions, cache: QueryCache) -> None:
    ranked = group.assign(_v=group["main_value"].fillna(-math.inf))
    ranked = ranked.sort_values(["_v", "label"], ascending=[False, True], kind="stable")
    rows = list(ranked.iterrows())
    for (idx, row), (_, nxt) in itertools.pairwise(rows):
        if row["main_metric"] != nxt["main_metric"] or pd.isna(row["main_value"]) or pd.isna(nxt["main_value"]):
            continue
        if not _same_data(row, nxt):
            continue
        p = _lead_pvalue(cache.get(row["path"]), cache.get(nxt["path"]), str(row["main_metric"]), opts)
        if p is None:
            continue
        out.at[idx, "lead_p"] = p
        out.at[idx, "lead_over"] = nxt["label"]
        out.at[idx, "lead_significant"] = p < opts.alpha


def _lead_pvalue(a_queries, b_queries, metric: str, opts: UncertaintyOptions) -> float | None:
    """Paired bootstrap p-value of ``a``'s lead on ``metric`` over ``b``; None when the two
    sidecars lack the outcomes or hold them on different queries (shapes, group sizes)."""
    if is_caption_selection_key(metric):
        try:
            return selection.selection_lead_pvalue(a_queries, b_queries, metric, n_boot=opts.n_boot, seed=opts.seed)
        except ValueError:
            return None
    a, b = metric_parts(a_queries, metric), metric_parts(b_queries, metric)
    if a is not None and b is not None:
        if [p.shape for p in a] != [p.shape for p in b]:
            return None
        return stats.paired_sum_pvalue(a, b, n_boot=opts.n_boot, seed=opts.seed)
    try:
        ua, ub = metric_units(a_queries, metric), metric_units(b_queries, metric)
    except ValueError:
        return None
    if ua is None or ub is None or ua.rows.shape != ub.rows.shape:
        return None
    if is_hard_negative_key(metric) and not np.array_equal(ua.rows[:, 1], ub.rows[:, 1]):
        return None  # other comparison groups: not the same pairs
    if metric in CLASSIFICATION_METRICS and not np.array_equal(ua.rows[:, 0], ub.rows[:, 0]):
        return None  # other true labels: not the same samples
    return stats.paired_units_pvalue(ua.rows, ub.rows, ua.statistic, n_boot=opts.n_boot, seed=opts.seed)


def _same_data(a: pd.Series, b: pd.Series) -> bool:
    """Paired tests need the same queries in the same order: same fingerprint and size."""
    for col in ("dataset_fingerprint", "n_images", "limit"):
        x, y = a[col], b[col]
        if pd.isna(x) != pd.isna(y) or (not pd.isna(x) and x != y):
            return False
    return True
