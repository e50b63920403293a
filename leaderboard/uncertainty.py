"""Uncertainty columns for the leaderboard frame, from the per-query sidecars (no model re-run).

``annotate(df)`` adds, per row, bootstrap intervals (``<metric>_lo`` / ``<metric>_hi``) for the
recalls, RSUM and acc1, and, per (task, dataset, split) table ordered by the main metric, a
paired bootstrap test of each row's lead over the next row (``lead_p``, ``lead_over``,
``lead_significant``). Rows without a readable sidecar get missing values and a
``queries_note`` saying why; a pair on different data (fingerprint or query count) is not tested.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats

RECALL_METRICS = [f"{d}_R@{k}" for d in ("t2i", "i2t") for k in (1, 5, 10)]
CI_METRICS = [*RECALL_METRICS, "rsum", "acc1"]
GROUP = ["task", "dataset", "split"]


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
                self.reasons[path] = f"per-query file unusable: {exc}"
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
    if metric == "rsum":
        t2i, i2t = queries.get("t2i_rank"), queries.get("i2t_rank")
        if t2i is None or i2t is None or not t2i.size or not i2t.size:
            return None
        return stats.rsum_parts(t2i, i2t)
    if metric == "acc1":
        correct = queries.get("correct")
        return None if correct is None or correct.size == 0 else [100.0 * correct.astype(np.float64)]
    return None


def annotate(df: pd.DataFrame, opts: UncertaintyOptions = UncertaintyOptions(),
             cache: QueryCache | None = None) -> pd.DataFrame:
    """``df`` plus interval, lead-test and note columns (index and row order kept)."""
    cache = cache or QueryCache()
    out = df.copy()
    for metric in CI_METRICS:
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
        for metric, (lo, hi) in _intervals(queries, row, opts).items():
            out.at[idx, f"{metric}_lo"], out.at[idx, f"{metric}_hi"] = lo, hi
    for _, group in df.groupby(GROUP, dropna=False, sort=False):
        _lead_tests(group, out, opts, cache)
    return out


def _intervals(queries: dict[str, np.ndarray], row: pd.Series,
               opts: UncertaintyOptions) -> dict[str, tuple[float, float]]:
    """Intervals for the metrics the row reports; the recalls of one direction share their
    resamples (``stats.recall_cis``: the numbers of separate calls, at a third of the cost)."""
    wanted = [m for m in CI_METRICS if m in row.index and not pd.isna(row[m])]
    out: dict[str, tuple[float, float]] = {}
    for direction in ("t2i", "i2t"):
        ranks = queries.get(f"{direction}_rank")
        ks = [int(m.split("@")[1]) for m in wanted if m.startswith(f"{direction}_R@")]
        if ks and ranks is not None and ranks.size:
            cis = stats.recall_cis(ranks, ks, n_boot=opts.n_boot, seed=opts.seed, alpha=opts.alpha)
            out.update({f"{direction}_R@{k}": ci for k, ci in cis.items()})
    for metric in ("rsum", "acc1"):
        parts = metric_parts(queries, metric) if metric in wanted else None
        if parts is not None:
            out[metric] = stats.sum_of_means_ci(parts, n_boot=opts.n_boot, seed=opts.seed, alpha=opts.alpha)
    return out


def _lead_tests(group: pd.DataFrame, out: pd.DataFrame, opts: UncertaintyOptions, cache: QueryCache) -> None:
    ranked = group.assign(_v=group["main_value"].fillna(-math.inf))
    ranked = ranked.sort_values(["_v", "label"], ascending=[False, True], kind="stable")
    rows = list(ranked.iterrows())
    for (idx, row), (_, nxt) in itertools.pairwise(rows):
        if row["main_metric"] != nxt["main_metric"] or pd.isna(row["main_value"]) or pd.isna(nxt["main_value"]):
            continue
        if not _same_data(row, nxt):
            continue
        a = metric_parts(cache.get(row["path"]), str(row["main_metric"]))
        b = metric_parts(cache.get(nxt["path"]), str(nxt["main_metric"]))
        if a is None or b is None or [p.shape for p in a] != [p.shape for p in b]:
            continue
        p = stats.paired_sum_pvalue(a, b, n_boot=opts.n_boot, seed=opts.seed)
        out.at[idx, "lead_p"] = p
        out.at[idx, "lead_over"] = nxt["label"]
        out.at[idx, "lead_significant"] = p < opts.alpha


def _same_data(a: pd.Series, b: pd.Series) -> bool:
    """Paired tests need the same queries in the same order: same fingerprint and size."""
    for col in ("dataset_fingerprint", "n_images", "limit"):
        x, y = a[col], b[col]
        if pd.isna(x) != pd.isna(y) or (not pd.isna(x) and x != y):
            return False
    return True
