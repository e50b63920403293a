"""The usual views of the leaderboard frame: models x datasets, and one dataset in full.

    >>> import leaderboard
    >>> df = leaderboard.load("results")                     # doctest: +SKIP
    >>> leaderboard.models_by_dataset(df, task="retrieval")  # doctest: +SKIP
    >>> leaderboard.dataset_metrics(df, "synthetic")         # doctest: +SKIP
"""

from __future__ import annotations

import pandas as pd

from .frame import METRIC_KEYS, LeaderboardError

ROW_KEY = ["label", "precision", "device"]  # what tells two rows of one dataset apart


def _check_unique(df: pd.DataFrame, keys: list[str], what: str) -> None:
    dup = df[df.duplicated(keys, keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        raise LeaderboardError(
            f"{what}: several records for {', '.join(f'{k}={first[k]}' for k in keys)}; "
            f"pass the latest frame (load(..., history=False)) or filter it first")


def _by_view(df: pd.DataFrame) -> pd.DataFrame:
    """``split`` as the tables show it: a ``--limit`` subset is a column (or index entry) of its
    own, "test [subset 50, seed 0]", never ranked in the full split's."""
    return df.assign(split=df["split_view"]) if "split_view" in df.columns else df


def models_by_dataset(df: pd.DataFrame, task: str | None = None, value: str = "main_value") -> pd.DataFrame:
    """Rows (label, precision, device) x columns (task, dataset, split) of ``value`` (the
    main metric by default); a subset run's split reads "test [subset 50, seed 0]". With
    ``task`` given, only that task and columns (dataset, split). A cell with no run is NaN; two records for one cell
are an error, never averaged."""
    sub = _by_view(df if task is None else df[df["task"] == task])
    if value not in sub.columns:
        raise LeaderboardError(f"models_by_dataset: no column {value!r} in the frame")
    columns = ["dataset", "split"] if task is not None else ["task", "dataset", "split"]
    _check_unique(sub, ROW_KEY + columns, "models_by_dataset")
    if sub.empty:
        return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=ROW_KEY))
    keyed = sub.assign(**{c: sub[c].astype(object).fillna("-") for c in ROW_KEY + columns})
    table = keyed.pivot(index=ROW_KEY, columns=columns, values=value)
    return table.sort_index(axis=0).sort_index(axis=1).astype("float64")


def dataset_metrics(df: pd.DataFrame, dataset: str, split: str | None = None,
                    task: str | None = None) -> pd.DataFrame:
    """One dataset (optionally one split/task) with every metric it reports: rows are
    (task, split, label, precision, device), sorted best main metric first within a task;
    columns are the metric keys that have at least one value, then items/s per stage."""
    sub = df[df["dataset"] == dataset]
    if split is not None:
        sub = sub[sub["split"] == split]
    if task is not None:
        sub = sub[sub["task"] == task]
    if sub.empty:
        known = sorted({str(d) for d in df["dataset"].dropna()})
        raise LeaderboardError(f"no records for dataset {dataset!r}"
                               f"{f' split {split!r}' if split else ''}{f' task {task!r}' if task else ''};"
                               f" datasets in the frame: {', '.join(known) or 'none'}")
    keys = ["task", "split", *ROW_KEY]
    sub = _by_view(sub)
    _check_unique(sub, keys, "dataset_metrics")
    first, last = df.columns.get_loc("main_value") + 1, df.columns.get_loc("device")
    metrics = [c for c in df.columns[first:last] if sub[c].notna().any()]
    metrics.sort(key=lambda c: METRIC_KEYS.index(c) if c in METRIC_KEYS else len(METRIC_KEYS))
    ips = [c for c in df.columns if c.startswith("ips_") and sub[c].notna().any()]
    sub = sub.sort_values(["task", "split", "main_value", "label"], ascending=[True, True, False, True],
                          na_position="last", kind="stable")
    return sub.set_index(keys)[["main_metric", *metrics, *ips]]
