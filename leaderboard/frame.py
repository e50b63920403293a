"""Result records on disk -> one flat, typed pandas DataFrame (one row per run)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.core.errors import UserError
from harness.results.records import RecordError, ResultRecord

from . import _values as _v


class LeaderboardError(UserError, ValueError):
    """A results directory or record the leaderboard cannot read; the message names it."""


# Metric keys (docs/architecture.md, docs/running.md), in display order; recalls are percent.
RETRIEVAL_METRICS = ["t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1", "i2t_R@5", "i2t_R@10", "rsum"]
RANK_METRICS = ["t2i_medr", "i2t_medr", "t2i_meanr", "i2t_meanr"]
ZEROSHOT_METRICS = ["acc1", "acc5", "macro_f1", "balanced_acc"]
METRIC_KEYS = RETRIEVAL_METRICS + RANK_METRICS + ZEROSHOT_METRICS

# Timing stages (docs/architecture.md); a record's other stages get their own ips_* column too.
STAGES = ["image_encode", "text_encode", "scoring", "rerank"]

# One-off costs, not part of evaluating a model on the data (excluded from eval throughput).
SETUP_STAGES = ("data_load", "model_load")

_STRING = ["model", "label", "family", "kind", "checkpoint", "prefilter", "dataset", "split", "language",
           "subset", "split_view", "dataset_fingerprint", "task", "main_metric", "device", "device_name",
           "precision", "latency_stage", "throughput_cached", "throughput_from", "harness_version", "git_sha",
           "torch_version", "python_version", "imported_from", "reproduced", "reproduced_note", "run_key", "path"]
_INT = ["params", "n_images", "batch_size", "rerank_k", "limit", "seed"]

COLUMNS = [
    "model", "label", "family", "kind", "checkpoint", "params", "rerank_k", "prefilter",
    "dataset", "split", "language", "subset", "split_view", "dataset_fingerprint", "n_images", "limit", "seed",
    "task", "main_metric", "main_value", *METRIC_KEYS,
    "device", "device_name", "precision", "batch_size",
    *[f"ips_{s}" for s in STAGES], "ips_eval", "eval_s", "throughput_cached", "throughput_from",
    "latency_stage", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms",
    "peak_rss_mb", "peak_device_mem_mb",
    "harness_version", "git_sha", "torch_version", "python_version",
    "imported_from",  # the tool whose result file `vlbench import` read (no timings); None: run here
    "reproduced", "reproduced_note",  # `vlbench verify`'s verdict against a published number; None: none
    "created_at", "runtime_s", "run_key", "path",
]

# What makes two records the same leaderboard row: the latest record per entry is shown, the
# others are its history. rerank_k/prefilter keep e.g. BLIP "ITC only" and "ITC->ITM k=128" apart;
# subset (--limit N with its seed) keeps a subset apart from the full split and from other subsets.
ENTRY_KEY = ["task", "dataset", "split", "model", "rerank_k", "prefilter", "precision", "device",
             "subset"]

_ENV_KEYS = {
    "harness_version": ("harness_version", "vlbench_version", "vlbench", "version"),
    "git_sha": ("git_sha", "git_commit", "git"),
    "torch_version": ("torch_version", "torch"),
    "python_version": ("python_version", "python"),
    "device_name": ("device_name", "gpu", "cuda_device"),
}


def load(results_dir: str | Path, history: bool = False) -> pd.DataFrame:
    """Read every record under ``results_dir`` (recursively) into a DataFrame.

    Files and folders whose name starts with '.' and files ending in '.tmp' are skipped
    (in-flight atomic writes, caches), and so are the per-query sidecars. Any other
    ``*.json`` must be a valid record: a malformed one raises LeaderboardError naming it.
    By default only the latest record (by ``created_at``) of each entry (``ENTRY_KEY``:
    task, dataset, split, model, rerank_k, prefilter, precision, device, limit) is kept;
    ``history=True`` keeps every record, oldest first within an entry.
    """
    root = Path(results_dir)
    if not root.exists():
        raise LeaderboardError(f"results directory {str(root)!r} does not exist")
    if not root.is_dir():
        raise LeaderboardError(f"results directory {str(root)!r} is not a directory")
    return records_to_frame(_read_records(root), history=history)


def iter_record_paths(root: Path) -> list[Path]:
    from harness.results.store import iter_record_files

    return iter_record_files(root)


def _read_records(root: Path) -> Iterable[tuple[ResultRecord, str]]:
    for path in iter_record_paths(root):
        origin = str(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LeaderboardError(f"{origin}: cannot read result record ({exc})") from exc
        if not isinstance(raw, dict):
            raise LeaderboardError(f"{origin}: result record must be a JSON object, "
                                   f"got {type(raw).__name__}")
        try:
            yield ResultRecord.from_dict(raw, origin=origin), origin
        except RecordError as exc:
            raise LeaderboardError(str(exc)) from exc
        except (TypeError, ValueError) as exc:
            raise LeaderboardError(f"{origin}: malformed record ({exc})") from exc


def records_to_frame(records: Iterable[ResultRecord | tuple[ResultRecord, str]],
                     history: bool = False) -> pd.DataFrame:
    """Flatten records (optionally paired with their origin path) into the typed frame."""
    rows = []
    for i, item in enumerate(records):
        record, origin = item if isinstance(item, tuple) else (item, f"record #{i}")
        try:
            rows.append(_row(record, origin))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise LeaderboardError(f"{origin}: malformed record ({exc})") from exc
    extra_metrics = sorted({k for r in rows for k in r["_metrics"]} - set(METRIC_KEYS))
    extra_stages = sorted({k for r in rows for k in r["_ips"]} - set(STAGES))
    metric_col = {k: (f"metric_{k}" if k in COLUMNS else k) for k in extra_metrics}
    stage_col = {s: f"ips_{s}" for s in extra_stages}
    columns = list(COLUMNS)
    at = columns.index(METRIC_KEYS[-1]) + 1
    columns[at:at] = [metric_col[k] for k in extra_metrics]
    at = columns.index(f"ips_{STAGES[-1]}") + 1
    columns[at:at] = [stage_col[s] for s in extra_stages]

    for r in rows:
        metrics, ips = r.pop("_metrics"), r.pop("_ips")
        for k, v in metrics.items():
            r[metric_col.get(k, k)] = v
        for s, v in ips.items():
            r[f"ips_{s}"] = v
    df = pd.DataFrame(rows, columns=columns)
    df = mark_subsets(_typed(df))
    df = df.sort_values(["created_at", "path"], kind="stable")
    df = borrow_throughput(df)
    if not history:
        df = df[~df[ENTRY_KEY].astype("object").fillna("\0").duplicated(keep="last")]
    df = df.sort_values(["task", "dataset", "split", "model", "created_at"], kind="stable")
    return df.reset_index(drop=True)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for col in df.columns:
        if col in _STRING:
            out[col] = df[col].astype("string")
        elif col in _INT:
            out[col] = pd.to_numeric(df[col]).astype("Int64")
        elif col == "created_at":
            out[col] = pd.to_datetime(df[col], utc=True).astype("datetime64[ns, UTC]")
        else:
            out[col] = pd.to_numeric(df[col]).astype("float64")
    return pd.DataFrame(out, index=df.index)


def _row(rec: ResultRecord, origin: str) -> dict[str, Any]:
    text, num, count = _v.as_str, _v.as_float, _v.as_int
    model, data = _v.as_mapping(rec.model, "model"), _v.as_mapping(rec.dataset, "dataset")
    opts, env = _v.as_mapping(rec.options, "options"), _v.as_mapping(rec.environment, "environment")
    metrics = {str(k): num(v, f"metrics[{k!r}]")
               for k, v in _v.as_mapping(rec.metrics, "metrics").items()}
    timings = _v.as_mapping(rec.timings, "timings")
    memory = _v.as_mapping(rec.memory, "memory")
    stage, latency = _main_latency(timings)
    # a stage served (wholly or partly) by the embedding cache, or by memoised tower features, did
    # not run the whole model: wall time over all stages is then no throughput of the model
    # (borrow_throughput may fill it in)
    cached = [k for k, t in timings.items() if k not in SETUP_STAGES and not t.measured]
    eval_s = 0.0 if cached else sum(float(t.seconds or 0.0) for k, t in timings.items() if k not in SETUP_STAGES)
    n_images = count(_v.pick(data, "images", "n_images"))
    rerank_k, prefilter = count(opts.get("rerank_k")), text(opts.get("prefilter"))
    row = {
        "model": text(model.get("name")),
        "label": display_label(text(model.get("name")), text(model.get("kind")), rerank_k, prefilter,
                               all_pairs=opts.get("all_pairs") is True, task=text(rec.task)),
        "family": text(model.get("family")),
        "kind": text(model.get("kind")), "checkpoint": text(model.get("checkpoint")),
        "params": count(model.get("params")), "rerank_k": rerank_k, "prefilter": prefilter,
        "dataset": text(data.get("name")), "split": text(data.get("split")),
        "language": text(data.get("language")),  # a multilingual set's split; None in older records
        "dataset_fingerprint": text(_v.pick(data, "fingerprint", "revision")),
        "n_images": n_images, "limit": count(opts.get("limit")), "seed": count(opts.get("seed")),
        "task": text(rec.task), "main_metric": text(rec.main_metric),
        "main_value": metrics.get(rec.main_metric),
        "device": text(opts.get("device")), "precision": text(opts.get("precision")),
        "batch_size": count(opts.get("batch_size")),
        "latency_stage": stage, "throughput_cached": ", ".join(cached) or None, "throughput_from": None,
        "latency_p50_ms": num(_v.pick(latency, "p50", "p50_ms"), "latency p50"),
        "latency_p90_ms": num(_v.pick(latency, "p90", "p90_ms"), "latency p90"),
        "latency_p99_ms": num(_v.pick(latency, "p99", "p99_ms"), "latency p99"),
        "eval_s": eval_s if eval_s > 0 else None,
        "ips_eval": n_images / eval_s if n_images and eval_s > 0 else None,
        "peak_rss_mb": _peak(memory, timings, "peak_rss_mb"),
        "peak_device_mem_mb": _peak(memory, timings, "peak_device_mem_mb"),
        "created_at": _v.as_timestamp(rec.created_at),
        "runtime_s": num(rec.runtime_s, "runtime_s"),
        "run_key": text(rec.run_key), "path": origin,
        "_metrics": metrics,
        "_ips": {_v.slug(k): num(t.items_per_s, f"timings[{k!r}].items_per_s")
                 for k, t in timings.items()},
    }
    for col, keys in _ENV_KEYS.items():
        row[col] = text(_v.pick(env, *keys))
    row["imported_from"] = text(env.get("imported_from"))
    if row["imported_from"] and row["label"]:
        row["label"] = f"{row['label']} [{row['imported_from']}]"  # marked wherever the page names it
    row["reproduced"], row["reproduced_note"] = _reproduced(rec)
    if not row["model"] or not row["run_key"]:
        raise ValueError("model.name and run_key are required")
    return row


def _reproduced(rec: ResultRecord) -> tuple[str | None, str | None]:
    """(verdict, one-line why) against the published reference table (harness.verify)."""
    from harness.verify.compare import record_verdict

    try:
        v = record_verdict(rec)
    except (ValueError, TypeError, AttributeError):  # a record too odd to match: no mark, no failure
        return None, None
    return (None, None) if v is None else (v.status, v.summary())


# What must match for another record's speed to stand for a cached run's: the entry, and the
# settings and machine that set the speed.
SPEED_KEY = [*ENTRY_KEY, "batch_size", "device_name"]
SPEED_COLUMNS = ["ips_eval", "eval_s", "latency_stage", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms"]


def borrow_throughput(df: pd.DataFrame) -> pd.DataFrame:
    """Speed for runs whose encoders were served by the embedding cache (``throughput_cached``):
    the eval throughput, latency and cached stages' items/s of the latest record of the same
    entry, batch size and device that did encode (``throughput_from`` names it), else left
    missing (the page says "cached"). ``df`` is sorted oldest first."""
    cached = df["throughput_cached"].notna()
    if not cached.any():
        return df
    df = df.copy()
    keys = pd.Series(list(df[SPEED_KEY].astype("object").fillna("\0").itertuples(index=False, name=None)),
                     index=df.index)
    measured = {}
    for idx in df.index[~cached]:
        measured[keys[idx]] = idx  # oldest first: the latest wins
    for idx in df.index[cached]:
        src = measured.get(keys[idx])
        if src is None:
            continue
        for col in sorted(not_measured(df.loc[idx]) & set(df.columns)):
            df.at[idx, col] = df.at[src, col]
        when = df.at[src, "created_at"]
        df.at[idx, "throughput_from"] = (f"run {str(df.at[src, 'run_key'])[:12]}"
                                         + ("" if pd.isna(when) else f" of {when:%Y-%m-%d %H:%M} UTC"))
    return df


def not_measured(row: Mapping[str, Any]) -> set[str]:
    """The speed columns of a row that its own run did not measure (its stages came from the
    embedding cache): filled from another run by :func:`borrow_throughput`, or missing."""
    stages = row.get("throughput_cached")
    if stages is None or pd.isna(stages):
        return set()
    return set(SPEED_COLUMNS) | {f"ips_{_v.slug(s.strip())}" for s in str(stages).split(",")}


def mark_subsets(df: pd.DataFrame) -> pd.DataFrame:
    """Fill ``subset``, ``split_view`` and the subset part of ``label``. A run with ``--limit N``
    is on other data than the full split: its rows get their own label and table, and are
    never ranked against the full split. A limit that kept every image (N at least the split's
    size: fewer images than N, or the fingerprint of a full-split run) is the full split.

    >>> df = pd.DataFrame({"task": ["r", "r"], "dataset": ["d", "d"], "split": ["test", "test"],
    ...     "dataset_fingerprint": ["f0", "f1"], "limit": [None, 50], "seed": [0, 0], "n_images": [200, 50],
    ...     "label": ["clip", "clip"]})
    >>> mark_subsets(df)[["label", "split_view"]].values.tolist()
    [['clip', 'test'], ['clip [subset 50, seed 0]', 'test [subset 50, seed 0]']]
    """
    limit, n = df["limit"], df["n_images"]
    where = list(zip(df["task"], df["dataset"], df["split"], df["dataset_fingerprint"]))
    full = {w for w, lim in zip(where, limit) if pd.isna(lim)}
    fewer = (n.notna() & limit.notna() & (n < limit)).fillna(False).to_numpy(bool)
    whole = fewer | np.array([w in full for w in where], dtype=bool)
    subset = [None if pd.isna(lim) or is_whole else f"subset {int(lim)}, seed {_seed(seed)}"
              for lim, seed, is_whole in zip(limit, df["seed"], whole)]
    mark = [f" [{s}]" if s else "" for s in subset]
    return df.assign(
        subset=pd.array(subset, dtype="string"),
        split_view=pd.array([None if pd.isna(sp) else f"{sp}{m}" for sp, m in zip(df["split"], mark)], dtype="string"),
        label=pd.array([None if pd.isna(lb) else f"{lb}{m}" for lb, m in zip(df["label"], mark)], dtype="string"))


def _seed(seed) -> str:
    return "?" if pd.isna(seed) else str(int(seed))


def display_label(model: str | None, kind: str | None, rerank_k: int | None,
                  prefilter: str | None, all_pairs: bool = False, task: str | None = None) -> str | None:
    """A row's readable name: the model, plus how a cross-encoder retrieved.

    >>> display_label("blip", "both", 0, None), display_label("blip", "both", 128, None)
    ('blip (ITC only)', 'blip (ITC→ITM k=128)')
    >>> display_label("vilt", "cross", 64, "clip"), display_label("clip", "dual", None, None)
    ('vilt (top-64 of clip)', 'clip')
    >>> display_label("vilt", "cross", None, None, all_pairs=True)
    'vilt (all pairs)'
    >>> display_label("blip", "both", None, None, task="caption_selection")  # its other row: ITC only
    'blip (ITM)'
    """
    if model is not None and task == "caption_selection" and kind == "both" and rerank_k is None:
        return f"{model} (ITM)"
    if model is not None and all_pairs:
        return f"{model} (all pairs)"
    if model is None or (rerank_k is None and prefilter is None):
        return model
    own = kind == "both" and prefilter in (None, model)
    if rerank_k == 0:
        how = "ITC only" if own else f"{prefilter or 'prefilter'} only"
    elif own:
        how = "ITC→ITM" + (f" k={rerank_k}" if rerank_k else "")
    elif prefilter:
        how = f"top-{rerank_k} of {prefilter}" if rerank_k else f"reranking {prefilter}"
    else:
        how = "all pairs"
    return f"{model} ({how})"


def _main_latency(timings: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    """Latency of the main encode stage: image encode if timed, else the longest timed stage."""
    timed = {k: t for k, t in timings.items() if getattr(t, "latency_ms", None)}
    for stage in STAGES:
        for name, t in timed.items():
            if _v.slug(name) == stage:
                return name, t.latency_ms
    if not timed:
        return None, {}
    name = max(timed, key=lambda k: timed[k].seconds or 0.0)
    return name, timed[name].latency_ms


def _peak(memory: Mapping[str, Any], timings: Mapping[str, Any], key: str) -> float | None:
    if memory.get(key) is not None:
        return _v.as_float(memory[key], f"memory[{key!r}]")
    per_stage = [getattr(t, key, None) for t in timings.values()]
    per_stage = [_v.as_float(v, key) for v in per_stage if v is not None]
    return max(per_stage) if per_stage else None
