"""Compact per-(task, dataset, split) views of the leaderboard frame, and a text rendering."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .frame import RETRIEVAL_METRICS, ZEROSHOT_METRICS

GroupKey = tuple[str, str, str]  # (task, dataset, split)

TASK_METRICS = {"retrieval": RETRIEVAL_METRICS, "zeroshot": ZEROSHOT_METRICS}
THROUGHPUT = ["ips_image_encode", "ips_text_encode"]  # always shown; other stages when timed
OPTIONAL_METRICS = {"retrieval": ["hn_binding", "hn_relation"]}  # shown when a dataset reports them
SETUP_STAGES = {"ips_data_load", "ips_model_load"}  # one-off costs, not a throughput to compare
TAIL = ["device", "precision", "created_at", "git_sha"]
LABELS = {
    "model": "model", "ips_image_encode": "img/s", "ips_text_encode": "txt/s",
    "ips_scoring": "scoring/s", "ips_rerank": "rerank/s", "created_at": "created",
    "git_sha": "git sha", "ips_eval": "eval img/s",
}
MISSING = "-"


def main_table(df: pd.DataFrame) -> dict[GroupKey, pd.DataFrame]:
    """One compact table per (task, dataset, split), rows sorted by the main metric (desc).

    Columns: model, the task's metrics (retrieval: six recalls + rsum; zeroshot: acc1,
    acc5, macro_f1, balanced_acc), items/s per stage, device, precision, created_at, git_sha.
    Numbers from different datasets or splits never share a table.
    """
    tables: dict[GroupKey, pd.DataFrame] = {}
    for key, sub in _groups(df):
        sub = sub.assign(_main=sub["main_value"].fillna(-math.inf))
        sub = sub.sort_values(["_main", "model"], ascending=[False, True], kind="stable")
        table = sub[table_columns(key[0], sub)].reset_index(drop=True)
        if "label" in sub.columns:  # the readable row name: e.g. "blip (ITC only)"
            table["model"] = sub["label"].fillna(sub["model"]).to_numpy()
        tables[key] = table
    return tables


def table_columns(task: str, sub: pd.DataFrame) -> list[str]:
    metrics = list(TASK_METRICS.get(task, []))
    if task == "caption_selection":
        from .selection import caption_columns

        metrics = caption_columns(sub)
    if not metrics:  # unknown task: whatever metrics its records report
        first, last = sub.columns.get_loc("main_value") + 1, sub.columns.get_loc("device")
        metrics = [c for c in sub.columns[first:last] if sub[c].notna().any()]
    metrics += [c for c in OPTIONAL_METRICS.get(task, []) if c in sub.columns and sub[c].notna().any()]
    for main in sub["main_metric"].dropna().unique():
        if main not in metrics and main in sub.columns:
            metrics.insert(0, main)
    stages = [c for c in sub.columns if c.startswith("ips_") and c not in THROUGHPUT
              and c not in SETUP_STAGES and sub[c].notna().any()]
    return ["model", *metrics, *THROUGHPUT, *stages, *TAIL]


def group_title(key: GroupKey) -> str:
    task, dataset, split = key
    return f"{task}: {dataset} / {split}"


def main_metrics(df: pd.DataFrame, key: GroupKey) -> list[str]:
    """The main metric name(s) the records of one group declare."""
    sub = select_group(df, key)
    return sorted(str(m) for m in sub["main_metric"].dropna().unique())


def label(col: str) -> str:
    return LABELS.get(col, col)


def is_numeric(col: str) -> bool:
    """Whether a main_table column holds numbers (right-aligned, numerically sorted)."""
    return col not in ("model", *TAIL)


def fmt(col: str, value: Any) -> str:
    """A cell as text: metrics to 2 decimals, items/s to 1, dates as YYYY-MM-DD, short sha."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return MISSING
    if col == "created_at":
        return pd.Timestamp(value).strftime("%Y-%m-%d")
    if col == "git_sha":
        return str(value)[:10]
    if isinstance(value, str):
        return value
    if col.startswith("ips_"):
        return f"{float(value):,.1f}"
    if isinstance(value, (int, float)):
        return f"{float(value):.2f}"
    return str(value)


def format_text(df: pd.DataFrame) -> str:
    """Plain-text tables for the terminal, one per (task, dataset, split)."""
    tables = main_table(df)
    if not tables:
        return "No results.\n"
    blocks = []
    for key, table in tables.items():
        mains = ", ".join(main_metrics(df, key)) or MISSING
        head = f"== {group_title(key)}  ({len(table)} run{'s' * (len(table) != 1)}, sorted by {mains}) =="
        blocks.append(head + "\n" + _text_table(table))
    return "\n\n".join(blocks) + "\n"


def _text_table(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    cells = [[label(c) for c in cols]]
    cells += [[fmt(c, row[c]) for c in cols] for _, row in table.iterrows()]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    right = [is_numeric(c) for c in cols]

    def line(row: list[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(row, widths, right)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _key_part(value: Any) -> str:
    return "?" if value is None or pd.isna(value) else str(value)


def _keys(df: pd.DataFrame) -> pd.Series:
    return pd.Series([(_key_part(t), _key_part(d), _key_part(s))
                      for t, d, s in zip(df["task"], df["dataset"], df["split"])],
                     index=df.index, dtype=object)


def _groups(df: pd.DataFrame) -> list[tuple[GroupKey, pd.DataFrame]]:
    keys = _keys(df)
    return [(key, df[[k == key for k in keys]]) for key in sorted(set(keys))]


def select_group(df: pd.DataFrame, key: GroupKey) -> pd.DataFrame:
    """The rows of ``df`` in one (task, dataset, split) group."""
    return df[[k == key for k in _keys(df)]]


__all__ = ["main_table", "format_text", "table_columns", "fmt", "label", "group_title",
           "main_metrics", "is_numeric", "select_group"]
