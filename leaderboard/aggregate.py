"""Suite scores on the leaderboard: the frame's latest rows -> each system's aggregate
(``harness.run.aggregate``) with bootstrap intervals from the per-query sidecars.

The interval of a mean over tasks resamples the items of each task on their own (queries,
images, judgment groups: whatever that task's own interval resamples, through the same
functions), computes each task's metric on its resample, and averages those, ``n_boot``
times; the percentiles of the averages are the interval. Tasks are independent test sets,
so each draws from its own seed (derived from the page's seed and the task's name); two
models on one task draw the same indices. A task without per-query outcomes leaves every
mean that holds it without an interval (and says so), never a narrower one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.metrics.keys import KENDALL_KEYS, QueryKey, is_caption_selection_key
from harness.run.aggregate import MEAN_R1, Aggregate, AggTask, RunRow, Score, System, borda, collect, score, task_values

from . import stats
from .frame import display_label
from .uncertainty import UNUSABLE, QueryCache, UncertaintyOptions, metric_parts, metric_units


def task_seed(seed: int, t: AggTask) -> int:
    """The bootstrap seed of one task: fixed by the page's seed and the task's name.

    >>> task_seed(0, AggTask("zeroshot", "a", "test")) == task_seed(0, AggTask("zeroshot", "a", "test"))
    True
    """
    return int(np.random.SeedSequence([seed, zlib.crc32(t.key.encode())]).generate_state(1)[0])


def task_replicates(queries: dict[str, np.ndarray] | None, metric: str, n_boot: int, seed: int) -> np.ndarray | None:
    """``(n_boot,)`` bootstrap values of ``metric`` from one run's per-query outcomes, drawn
    as the page's own interval for that metric draws them (same seed: same numbers), or None
    when the sidecar cannot give them.

    >>> r = task_replicates({"t2i_rank": np.array([1, 2]), "i2t_rank": np.array([1])}, "mean_R@1", 4, 0)
    >>> set(r.tolist()) <= {50.0, 75.0, 100.0}, r.shape  # i2t: always 50; t2i: 0, 25 or 50
    (True, (4,))
    """
    if not queries:
        return None
    if metric == MEAN_R1:  # DataComp's retrieval number: half of each direction's R@1
        t2i, i2t = queries.get(QueryKey.T2I_RANK.value), queries.get(QueryKey.I2T_RANK.value)
        if t2i is None or i2t is None or not t2i.size or not i2t.size:
            return None
        return stats._sum_of_means([50.0 * (t2i <= 1), 50.0 * (i2t <= 1)], n_boot, seed)
    parts = metric_parts(queries, metric)
    if parts is not None:
        return stats._sum_of_means(parts, n_boot, seed)
    units = metric_units(queries, metric)
    if units is not None:
        return stats._resampled_stats(units.rows, units.statistic, n_boot, seed)
    if is_caption_selection_key(metric):
        from .selection import selection_replicates

        return selection_replicates(queries, [metric], n_boot, seed).get(metric)
    variant = next((v for v, key in KENDALL_KEYS.items() if key == metric), None)
    if variant is not None:
        from harness.metrics.agreement import grouped_tau_replicates

        score_, human, group = (queries.get(k.value) for k in (QueryKey.SCORE, QueryKey.HUMAN, QueryKey.GROUP))
        if score_ is None or human is None or group is None or not score_.size:
            return None
        return grouped_tau_replicates(score_, human, group, variant, n_boot, seed)
    return None


def interval(replicates, alpha: float) -> tuple[float, float] | None:
    """Percentile interval of bootstrap values (NaN resamples left out); None without any.

    >>> interval(np.array([1.0, 2.0, 3.0, np.nan]), 0.5)
    (1.5, 2.5)
    """
    if replicates is None:
        return None
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


@dataclass
class SystemScore:
    """One row of a suite's aggregate table."""

    system: System
    label: str
    values: dict[AggTask, float]                 # each task's number, as it enters the mean
    metrics: dict[AggTask, str]                  # the metric each task entered with
    score: Score
    intervals: dict[str, tuple[float, float] | None] = field(default_factory=dict)  # "mean", "group:G", "type:T"
    borda: tuple[float, int] | None = None       # (points, rank); None: not ranked (incomplete)
    no_interval: dict[str, str] = field(default_factory=dict)  # task key -> why it has no resamples


def frame_rows(df: pd.DataFrame) -> list[RunRow]:
    """The frame's rows as ``RunRow`` (metrics: the numeric metric columns a row has), oldest first."""
    first, last = df.columns.get_loc("main_value") + 1, df.columns.get_loc("device")
    metric_cols = [c for c in df.columns[first:last] if not str(c).endswith(("_lo", "_hi"))]
    rows = []
    for _, r in df.sort_values("created_at", kind="stable").iterrows():
        metrics = {str(c)[len("metric_"):] if str(c).startswith("metric_") else str(c): float(r[c])
                   for c in metric_cols if not pd.isna(r[c])}
        rows.append(RunRow(str(r["model"]), str(r["dataset"]), _opt(r["split"]), str(r["task"]), metrics,
                           _opt(r["main_metric"]), _opt(r["precision"]), str(_opt(r["device"]) or "").split(":")[0],
                           _opt_int(r["limit"]), _opt_int(r["rerank_k"]), _opt(r["prefilter"]), _opt(r["kind"]),
                           ref=r.get("path")))
    return rows


def _opt(value):
    return None if value is None or pd.isna(value) else str(value)


def _opt_int(value):
    return None if value is None or pd.isna(value) else int(value)


def suite_scores(df: pd.DataFrame, agg: Aggregate, opts: UncertaintyOptions = UncertaintyOptions(),
                 cache: QueryCache | None = None) -> list[SystemScore]:
    """Every system with a run on at least one of ``agg``'s tasks: complete ones by their
    mean (best first), then incomplete ones by how many tasks they have."""
    cache = cache or QueryCache()
    out = []
    systems = collect(agg, frame_rows(df))
    for system, runs in systems.items():
        values, metrics, missing = task_values(agg, runs)
        reps, no_ci = {}, {}
        for t, metric in metrics.items():
            run = runs[t]
            try:
                rep = task_replicates(cache.get(run.ref), metric, opts.n_boot, task_seed(opts.seed, t))
            except ValueError as exc:  # outcomes that do not fit the metric: no interval, said so
                no_ci[t.key] = f"{UNUSABLE}: {exc}"
                continue
            if rep is None:
                no_ci[t.key] = cache.reasons.get(run.ref, f"no per-query outcomes for {metric}")
            else:
                reps[t] = rep
        s = score(agg, values, missing)
        rep_score = score(agg, reps)
        intervals = {"mean": interval(rep_score.mean, opts.alpha)}
        intervals.update({f"group:{g}": interval(v, opts.alpha) for g, v in rep_score.groups.items()})
        intervals.update({f"type:{k}": interval(v, opts.alpha) for k, v in rep_score.types.items()})
        label = display_label(system.model, system.kind, system.rerank_k, system.prefilter) or system.model
        out.append(SystemScore(system, label, values, metrics, s, intervals, None, no_ci))
    ranks = borda({r.system: r.values for r in out}, agg.tasks)
    for r in out:
        r.borda = ranks.get(r.system)
    return sorted(out, key=lambda r: (not r.score.complete, -(r.score.mean if r.score.complete else len(r.values)),
                                      r.label, r.system.precision, r.system.device))


def applies(df: pd.DataFrame, agg: Aggregate) -> bool:
    """Whether any latest run is on one of the aggregate's tasks."""
    return bool(collect(agg, frame_rows(df))) if not df.empty else False


__all__ = ["SystemScore", "applies", "frame_rows", "interval", "suite_scores", "task_replicates", "task_seed"]
