"""Regression gate: the latest result records against a baseline file (one entry per run
identity: model, dataset, split, task, precision, device kind, limit, and for cross-encoders
rerank_k and prefilter, so BLIP "ITC only" and "ITC->ITM k=128" are separate entries). Accuracy fails when worse
by more than an absolute tolerance (for the ranks medr/meanr an increase is worse); throughput
when it drops by more than a relative tolerance, compared only on the baseline's machine (else
skipped); a baseline run with no current record is a "missing" regression. Improvements pass."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import UserError
from harness.results import store
from harness.results.records import ResultRecord

BASELINE_SCHEMA_VERSION = 1
THROUGHPUT_STAGES = ("image_encode", "text_encode")  # linear_probe: its eval split's image_encode
RANK_METRICS = frozenset({"t2i_medr", "i2t_medr", "t2i_meanr", "i2t_meanr"})  # lower is better
# Absolute tolerances in the metric's unit (percentage points for recalls and accuracies, ranks
# for medr/meanr); "default" covers other metric keys (e.g. hn_*, higher is better). "throughput"
# is relative (0.15: a drop of more than 15% of the baseline's items/s fails); "ips_<stage>"
# overrides it for one stage. A baseline file's "tolerances" override these key by key.
DEFAULT_TOLERANCES: dict[str, float] = {**{f"{d}_R@{k}": 0.5 for d in ("t2i", "i2t") for k in (1, 5, 10)},
    "rsum": 1.5, "t2i_medr": 1.0, "i2t_medr": 1.0, "t2i_meanr": 1.0, "i2t_meanr": 1.0, "acc1": 0.5,
    "acc5": 0.5, "macro_f1": 0.5, "balanced_acc": 0.5, "kendall_tau_c": 0.5, "kendall_tau_b": 0.5,
    "acc": 0.5, "text_score": 0.5, "image_score": 0.5, "group_score": 0.5,  # caption selection (acc_*: default)
    "default": 0.5, "throughput": 0.15,
    "aggregate": 0.5}  # a suite score (harness.gate.aggregate); "aggregate:<score>" for one of them
IDENTITY = ("model", "dataset", "split", "task", "precision", "device", "limit", "rerank_k", "prefilter", "task_options")
REQUIRED = IDENTITY[:6]  # limit/rerank_k/prefilter/task_options may be absent (older baselines): None
MACHINE_KEYS = ("device", "device_name", "precision", "batch_size")  # must match to compare items/s
_EPS = 1e-9  # float slack on the tolerance comparisons
NOTHING_COMPARED = "nothing was compared (no baseline number met a current one): the gate checked nothing"


class CheckError(UserError, ValueError):
    """An unusable baseline, results folder or suite selection; the message names it."""


@dataclass(frozen=True)
class Finding:
    model: str
    dataset: str
    split: str
    task: str
    metric: str                # metric key; "ips_<stage>" for throughput; "-" for a missing run
    baseline: float | None
    current: float | None
    delta: float | None        # current - baseline
    tolerance: float | None    # absolute (accuracy) or relative (throughput)
    kind: str                  # "accuracy" | "throughput" | "missing"
    status: str                # "regression" | "ok" | "skipped"
    precision: str = ""
    device: str = ""
    reason: str = ""


def identity(rec: ResultRecord) -> dict:
    opts = rec.options
    return {"model": rec.model.get("name"), "dataset": rec.dataset.get("name"), "split": rec.dataset.get("split"),
            "task": rec.task, "precision": str(opts.get("precision")), "limit": opts.get("limit"),
            "device": str(opts.get("device", "cpu")).split(":")[0],  # the kind: cpu, cuda
            "rerank_k": opts.get("rerank_k"), "prefilter": opts.get("prefilter"),
            "task_options": task_options_text(opts.get("task_options"))}


def task_options_text(options: dict | None) -> str | None:
    """A task's own options as one comparable string (``head=concat``: another entry than
    ``head=interact``), None when the task has none.

    >>> task_options_text({"head": "concat", "features": "auto"}), task_options_text(None)
    ('features=auto,head=concat', None)
    """
    return ",".join(f"{k}={v}" for k, v in sorted(options.items())) if options else None


def _key(d: dict) -> tuple:
    return tuple(d.get(k) for k in IDENTITY)


def _when(rec: ResultRecord) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(str(rec.created_at))
    except ValueError:
        t = dt.datetime.min
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def latest(records: list[ResultRecord]) -> dict[tuple, ResultRecord]:
    """Identity key -> the record with the latest created_at."""
    return {_key(identity(r)): r for r in sorted(records, key=_when)}


def load_records(results: Path) -> list[ResultRecord]:
    """The latest record of each run identity under ``results`` (the store's own file walk)."""
    if not Path(results).is_dir():
        raise CheckError(f"results directory {str(results)!r} does not exist")
    records = []
    for path in store.iter_record_files(Path(results)):
        records.append(store.read_record(path))
    return list(latest(records).values())


def _machine(rec: ResultRecord) -> dict:
    env = rec.environment or {}
    return {"device": identity(rec)["device"], "device_name": env.get("device_name"),
            "precision": str(rec.options.get("precision")), "torch": env.get("torch") or env.get("torch_version"),
            "batch_size": rec.options.get("batch_size")}


def _baseline_metrics(rec: ResultRecord) -> dict:
    """The record's finite metrics (NaN is no value to hold a later run to, and not JSON);
    a record with none cannot be a baseline entry."""
    metrics = {k: v for k, v in rec.metrics.items() if not isinstance(v, bool) and _finite(v)}
    if not metrics:
        raise CheckError(f"record {rec.run_key} ({rec.model.get('name')} on {rec.dataset.get('name')}/"
                         f"{rec.dataset.get('split')}, {rec.task}) has no finite metric to keep in a baseline")
    return metrics


def make_baseline(records: list[ResultRecord], suite_name: str) -> dict:
    if not records:
        raise CheckError(f"suite {suite_name}: no records to write a baseline from")
    entries = [{**identity(r), "metrics": _baseline_metrics(r),
                "throughput": {s: r.timings[s].items_per_s for s in THROUGHPUT_STAGES  # cached stages have none
                               if s in r.timings and r.timings[s].items_per_s is not None},
                "machine": _machine(r), "run_key": r.run_key, "recorded_at": r.created_at} for r in records]
    return {"schema_version": BASELINE_SCHEMA_VERSION, "suite": suite_name,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "tolerances": dict(DEFAULT_TOLERANCES),
            "entries": sorted(entries, key=lambda e: [str(v) for v in _key(e)])}


def write_baseline(records: list[ResultRecord], suite_name: str, path: Path, extra: dict | None = None) -> Path:
    """Write the baseline (plus ``extra`` top-level parts: the suite's scores); an entry of the
    file it replaces keeps its own ``tolerances`` (they were measured for that run, not for
    these numbers alone)."""
    baseline = {**make_baseline(records, suite_name), **(extra or {})}
    try:
        previous = load_baseline(Path(path))
    except CheckError:
        previous = {}
    for part, key in (("entries", _key), ("aggregates", _aggregate_key)):  # runs, then suite scores
        old = {key(e): e["tolerances"] for e in previous.get(part, []) if e.get("tolerances")}
        for e in baseline.get(part, []):
            if key(e) in old:
                e["tolerances"] = old[key(e)]
    return store.write_json_atomic(Path(path), baseline)


def _aggregate_key(e: dict) -> tuple:
    return tuple(str(e.get(k)) for k in ("aggregate", "model", "precision", "device"))


def suite_records(suite, records: list[ResultRecord], results: Path) -> list[ResultRecord]:
    """The records of each run of ``suite``: model + dataset + task (+ split and limit, and the
    suite's precision/device options when it sets them) match. A run with no record is an error."""
    from harness.datasets import DATASETS
    from harness.models import MODELS
    from harness.tasks import TASKS

    canon = lambda registry, name: registry.resolve(name) if name in registry else name  # noqa: E731
    opts, chosen = suite.options, {}
    for e in suite.entries:
        dataset = canon(DATASETS, e.dataset)
        split = e.split or (DATASETS.get(dataset).default_split if dataset in DATASETS else None)
        want = {"model": canon(MODELS, e.model), "dataset": dataset, "task": canon(TASKS, e.task), "split": split,
                "precision": opts.get("precision"), "device": str(opts.get("device", "")).split(":")[0]}
        want = {k: v for k, v in want.items() if v}  # unset: any
        want["limit"] = e.limit if e.limit is not None else opts.get("limit")  # None: the full split
        hits = [r for r in records if all(identity(r)[k] == v for k, v in want.items())]
        if not hits:
            raise CheckError(f"suite {suite.name}: no record for {e.model} on {e.dataset}/{split or '*'} ({e.task})"
                             f" in {results}; run `vlbench sweep --suite {suite.name}` first")
        chosen.update({_key(identity(r)): r for r in hits})
    return list(chosen.values())


def load_baseline(path: Path) -> dict:
    """Read and validate a baseline file; every problem is a CheckError naming the file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        why = "no such file; write one with `vlbench baseline update --suite S`" if isinstance(
            exc, FileNotFoundError) else exc
        raise CheckError(f"cannot read baseline file {str(path)!r} ({why})") from None
    bad = lambda what: CheckError(f"{path}: malformed baseline: {what}")  # noqa: E731

    def numbers(d, where: str, nonneg: bool = False) -> None:
        # finite only: NaN/Infinity (which Python's json reads) compare as nothing, so a gate of
        # them would pass having checked nothing; make_baseline never writes them
        if not isinstance(d, dict):
            raise bad(f"{where} must be an object")
        for k, v in d.items():
            if isinstance(v, bool) or not _finite(v) or (nonneg and not v >= 0):
                raise bad(f"{where}[{k!r}] must be a finite{' non-negative' if nonneg else ''} number, got {v!r}")

    if not isinstance(raw, dict):
        raise bad(f"expected a JSON object, got {type(raw).__name__}")
    if raw.get("schema_version") != BASELINE_SCHEMA_VERSION:
        raise bad(f"schema_version {raw.get('schema_version')!r}, this vlbench reads {BASELINE_SCHEMA_VERSION}")
    numbers(raw.setdefault("tolerances", {}), "tolerances", nonneg=True)
    if not isinstance(raw.get("entries"), list):
        raise bad("'entries' must be a list")
    if not raw["entries"]:
        raise bad("'entries' is empty, so a check would compare nothing; "
                  "write the baseline with `vlbench baseline update --suite S`")
    for i, e in enumerate(raw["entries"]):
        if not isinstance(e, dict) or any(k not in e for k in REQUIRED):
            raise bad(f"entries[{i}] must be an object with {', '.join(REQUIRED)}")
        where = f"entries[{i}] ({_entry_name(e)})"
        if not isinstance(e.get("metrics"), dict) or not e["metrics"]:
            raise bad(f"{where} has no 'metrics' to compare (got {e.get('metrics')!r})")
        numbers(e["metrics"], f"{where}.metrics")
        numbers(e.setdefault("throughput", {}), f"{where}.throughput")
        if "tolerances" in e:  # per entry, measured (benchmarks/RESULTS.md says why)
            numbers(e["tolerances"], f"{where}.tolerances", nonneg=True)
        if not isinstance(e.setdefault("machine", {}), dict):
            raise bad(f"{where}.machine must be an object")
    return raw


def select_models(items: list, names: list[str], model_of, canonical=None) -> tuple[list, list[str], list[str]]:
    """``(the items of the named models, the names with no item, every model the items hold)``;
    ``canonical`` maps a name to the model's registered name (default: aliases resolved,
    unregistered names kept as given). Callers raise on the second, so a narrowed sweep or
    check never passes having nothing.

    >>> select_models([{"m": "a"}, {"m": "b"}], ["b", "z"], lambda e: e["m"], canonical=str)
    ([{'m': 'b'}], ['z'], ['a', 'b'])
    """
    canonical = canonical or _canonical_model
    wanted = {canonical(n): n for n in names}
    have = sorted({model_of(x) for x in items})
    absent = [n for name, n in wanted.items() if name not in have]
    return [x for x in items if model_of(x) in wanted], absent, have


def only_models(baseline: dict, names: list[str], where: str) -> dict:
    """The baseline restricted to the named models' entries (aliases resolved). A name with
    no entry is a CheckError naming the file's models: a check must compare something."""
    entries, absent, have = select_models(baseline["entries"], names, lambda e: e.get("model"))
    if absent:
        raise CheckError(f"{where}: no baseline entries for {', '.join(map(repr, absent))}; "
                         f"its models: {', '.join(have)}")
    return {**baseline, "entries": entries}


def _canonical_model(name: str) -> str:
    """A registered model's name for an alias; other names (imported runs, models registered
    by a plugin not loaded here) as given."""
    from harness.core.registry import UnknownNameError
    from harness.models import resolve

    try:
        return resolve(name).name
    except UnknownNameError:
        return name


def _entry_name(e: dict) -> str:
    return (f"{_run_name(e)} on {e.get('dataset')}/{e.get('split')}, {e.get('task')}, "
            f"{e.get('precision')}/{e.get('device')}")


def tolerance_for(metric: str, tolerances: dict) -> float:
    tol = {**DEFAULT_TOLERANCES, **tolerances}
    return float(tol.get(metric, tol["throughput" if metric.startswith("ips_") else "default"]))


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def compare(records: list[ResultRecord], baseline: dict, throughput: bool = True) -> list[Finding]:
    """One Finding per baseline number (or per missing run); ``throughput=False`` checks accuracy only."""
    current, tolerances, findings = latest(records), baseline.get("tolerances", {}), []
    for e in baseline["entries"]:
        def add(metric, base, cur, tol, kind, status, reason=""):
            delta = cur - base if _finite(base) and _finite(cur) else None
            findings.append(Finding(_run_name(e), e["dataset"], e["split"], e["task"], metric, base, cur, delta,  # noqa: B023
                                    tol, kind, status, e["precision"], e["device"], reason))  # noqa: B023

        rec, first = current.get(_key(e)), len(findings)
        if rec is None:
            add("-", None, None, None, "missing", "regression", "no current record for this run")
            continue
        own = {**tolerances, **e.get("tolerances", {})}  # an entry's measured tolerances win
        for metric, base in e["metrics"].items():
            tol, cur = tolerance_for(metric, own), rec.metrics.get(metric)
            if metric not in rec.metrics:
                add(metric, base, None, tol, "missing", "regression", "metric not in the current record")
            elif not _finite(base):
                add(metric, base, cur, tol, "accuracy", "skipped", "no finite baseline value")
            else:
                worse = (cur - base) if metric in RANK_METRICS else (base - cur)
                add(metric, base, cur, tol, "accuracy", "ok" if _finite(cur) and worse <= tol + _EPS else "regression")
        mine, theirs = _machine(rec), e["machine"]
        differ = "; ".join(f"{k} {theirs[k]!r} != {mine.get(k)!r}" for k in MACHINE_KEYS
                           if k in theirs and theirs[k] != mine.get(k))
        for stage, base in e["throughput"].items() if throughput else ():
            metric, timing = f"ips_{stage}", rec.timings.get(stage)
            tol, cur = tolerance_for(metric, tolerances), timing.items_per_s if timing else None
            if differ:
                add(metric, base, cur, tol, "throughput", "skipped", f"other machine: {differ}")
            elif timing is not None and timing.cached:
                add(metric, base, cur, tol, "throughput", "skipped", "served from the embedding cache, not encoded")
            elif timing is not None and timing.reused_items:
                add(metric, base, cur, tol, "throughput", "skipped", "reused memoised tower features, not encoded")
            elif cur is None:
                add(metric, base, None, tol, "missing", "regression", "stage not timed in the current record")
            elif not _finite(base) or base <= 0:
                add(metric, base, cur, tol, "throughput", "skipped", "no positive baseline value")
            else:
                ok = _finite(cur) and cur >= base * (1 - tol) - _EPS
                add(metric, base, cur, tol, "throughput", "ok" if ok else "regression")
        accuracy = [f for f in findings[first:] if f.kind in ("accuracy", "missing")]
        if all(f.status == "skipped" for f in accuracy):  # none at all, or every one skipped
            add("-", None, None, None, "empty", "regression",
                "every metric of this baseline entry was skipped: the run was not checked")
    if not any(f.status == "ok" or f.kind in ("accuracy", "throughput") and f.status == "regression"
               for f in findings):
        findings.append(Finding("-", "-", "-", "-", "-", None, None, None, None, "empty", "regression",
                                reason=NOTHING_COMPARED))
    return findings


def _run_name(e: dict) -> str:
    """The model, plus its reranking setup when it has one (one model, several entries)."""
    how = [f"{k}={e[k]}" for k in ("rerank_k", "prefilter", "task_options") if e.get(k) is not None]
    return f"{e['model']} ({', '.join(how)})" if how else str(e["model"])


def _row(f: Finding) -> list[str]:
    num = lambda x, fmt=".2f": "-" if x is None else format(x, fmt)  # noqa: E731
    if f.metric.startswith("ips_"):  # relative: shown in percent
        delta = "-" if f.delta is None or not f.baseline else f"{100 * f.delta / f.baseline:+.1f}%"
        tol = "-" if f.tolerance is None else f"{100 * f.tolerance:g}%"
    else:
        delta, tol = num(f.delta, "+.2f"), num(f.tolerance, "g")
    return [f.status.upper(), f.model, f"{f.dataset}/{f.split}", f.task, f"{f.precision}/{f.device}", f.metric,
            num(f.baseline), num(f.current), delta, tol, f.reason]


def format_findings(findings: list[Finding]) -> str:
    """Every regression as a row of a plain-text table; ok and skipped ones counted (skipped
    ones grouped by reason)."""
    header = ["status", "model", "dataset/split", "task", "prec/dev", "metric", "baseline", "current",
              "delta", "tolerance", "note"]
    rows = [_row(f) for f in findings if f.status == "regression"]
    lines: list[str] = []
    if rows:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [fmt.format(*r).rstrip() for r in [header, ["-" * w for w in widths], *rows]] + [""]
    skipped = Counter(f"{f.kind} comparison(s): {f.reason}" for f in findings if f.status == "skipped")
    lines += [f"skipped {n} {why}" for why, n in skipped.items()]
    n = {s: sum(f.status == s for f in findings) for s in ("regression", "ok", "skipped")}
    lines.append(f"check: {n['regression']} regression(s), {n['ok']} ok, {n['skipped']} skipped "
                 f"({len(findings)} comparisons)")
    return "\n".join(lines)
