"""The regression gate for suite scores: a baseline's ``aggregates`` list holds, per model
(system) of a suite that declares an ``aggregate``, its mean, group means and per-type means,
and the definition they were computed with (tasks, the metric each entered with, groups), so
a later check recomputes the same numbers from the latest records even if the suite file has
changed since. A score that drops by more than its tolerance (points; ``aggregate`` in the
baseline's tolerances, or ``aggregate:<score>`` for one score, e.g. ``aggregate:mean``) is a
regression; so is a score that can no longer be computed because a task's run is missing.

    {"aggregate": "synthetic", "model": "tiny-clip-synth", "precision": "fp32", "device": "cpu",
     "rerank_k": null, "prefilter": null,
     "tasks": [{"task": "retrieval", "dataset": "synthetic", "split": "test", "limit": null,
                "metric": "mean_R@1"}, ...],
     "groups": {"image-text matching": ["retrieval:synthetic/test", ...]},
     "scores": {"mean": 61.2, "group:image-text matching": 55.0, "type:retrieval": 48.1}}
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.gate.check import DEFAULT_TOLERANCES, CheckError, Finding, identity
from harness.results.records import ResultRecord
from harness.run.aggregate import (
    Aggregate,
    AggTask,
    RunRow,
    Score,
    System,
    collect,
    score,
    suite_aggregate,
    task_values,
)

EPS = 1e-9  # float slack on the tolerance comparison, as check's
SYSTEM_KEYS = ("model", "precision", "device", "rerank_k", "prefilter")


def run_row(rec: ResultRecord) -> RunRow:
    ident = identity(rec)
    return RunRow(ident["model"], ident["dataset"], ident["split"], ident["task"], rec.metrics, rec.main_metric,
                  ident["precision"], ident["device"], ident["limit"], ident["rerank_k"], ident["prefilter"],
                  rec.model.get("kind"))


def score_items(s: Score) -> dict[str, float]:
    """A Score's defined numbers under the keys baselines and the page use.

    >>> score_items(Score(60.0, {"VTAB": None, "IN": 70.0}, {"zeroshot": 65.0}, {}))
    {'mean': 60.0, 'group:IN': 70.0, 'type:zeroshot': 65.0}
    """
    items = {"mean": s.mean, **{f"group:{g}": v for g, v in s.groups.items()},
             **{f"type:{k}": v for k, v in s.types.items()}}
    return {k: float(v) for k, v in items.items() if v is not None}


def _systems(agg: Aggregate, records: Iterable[ResultRecord]):
    rows = [run_row(r) for r in sorted(records, key=lambda r: str(r.created_at))]
    for system, runs in collect(agg, rows).items():
        values, metrics, missing = task_values(agg, runs)
        yield system, metrics, score(agg, values, missing)


def baseline_entries(suite, records: list[ResultRecord]) -> list[dict]:
    """One entry per system with at least one defined score; [] when the suite declares no
    aggregate. Each task's metric is the one it entered with (recorded, so a check compares
    like with like)."""
    agg = suite_aggregate(suite)
    if agg is None:
        return []
    out = []
    for system, metrics, s in _systems(agg, records):
        scores = score_items(s)
        if not scores:
            continue
        tasks = [{"task": t.task, "dataset": t.dataset, "split": t.split, "limit": t.limit,
                  "metric": metrics.get(t)} for t in agg.tasks]
        out.append({"aggregate": agg.name, **{k: getattr(system, k) for k in SYSTEM_KEYS}, "tasks": tasks,
                    "groups": {g: [t.key for t in ts] for g, ts in agg.groups}, "scores": scores})
    return out


def validate(baseline: dict, path) -> list[dict]:
    """The baseline's ``aggregates`` (absent: []), checked; every problem is a CheckError naming the file."""
    entries = baseline.get("aggregates", [])
    bad = lambda what: CheckError(f"{path}: malformed baseline: {what}")  # noqa: E731
    if not isinstance(entries, list):
        raise bad("'aggregates' must be a list")
    for i, e in enumerate(entries):
        where = f"aggregates[{i}]"
        if not isinstance(e, dict) or not all(k in e for k in ("aggregate", "model", "precision", "device",
                                                              "tasks", "scores")):
            raise bad(f"{where} must be an object with aggregate, model, precision, device, tasks, scores")
        if not isinstance(e["tasks"], list) or not e["tasks"] or not all(
                isinstance(t, dict) and {"task", "dataset", "split"} <= set(t) for t in e["tasks"]):
            raise bad(f"{where}.tasks must be a non-empty list of {{task, dataset, split, limit, metric}}")
        if not isinstance(e["scores"], dict) or not e["scores"] or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < float("inf") and v == v
                for v in e["scores"].values()):
            raise bad(f"{where}.scores must be a non-empty object of finite numbers")
        if not isinstance(e.get("groups", {}), dict):
            raise bad(f"{where}.groups must be an object")
    return entries


def _aggregate_of(e: dict) -> Aggregate:
    tasks = tuple(AggTask(t["task"], t["dataset"], t["split"], t.get("limit")) for t in e["tasks"])
    by_key = {t.key: t for t in tasks}
    groups = tuple((g, tuple(by_key[k] for k in keys if k in by_key)) for g, keys in (e.get("groups") or {}).items())
    metric = tuple((t, m["metric"]) for t, m in zip(tasks, e["tasks"]) if m.get("metric"))
    return Aggregate(str(e["aggregate"]), tasks, groups, metric, e["precision"], e["device"])


def tolerance(key: str, tolerances: dict) -> float:
    tol = {**DEFAULT_TOLERANCES, **tolerances}
    return float(tol.get(f"aggregate:{key}", tol["aggregate"]))


def compare(records: list[ResultRecord], baseline: dict, entries: list[dict]) -> list[Finding]:
    """One Finding per baseline score (task "aggregate", dataset: the aggregate's name)."""
    tolerances, findings = baseline.get("tolerances", {}), []
    for e in entries:
        agg = _aggregate_of(e)
        want = System(e["model"], str(e["precision"]), str(e["device"]), e.get("rerank_k"), e.get("prefilter"))
        current = next((s for system, _, s in _systems(agg, records) if system == want), None)
        now = score_items(current) if current else {}
        lacks = ", ".join(current.missing) if current and current.missing else "every task"
        name = _name(e)
        for key, base in e["scores"].items():
            # an entry's own measured tolerances win (a random network's probes: benchmarks/RESULTS.md)
            tol, cur = tolerance(key, {**tolerances, **e.get("tolerances", {})}), now.get(key)
            if cur is None:
                findings.append(Finding(name, agg.name, "-", "aggregate", key, base, None, None, tol, "missing",
                                        "regression", str(e["precision"]), str(e["device"]),
                                        f"cannot compute: no current run with the metric for {lacks}"))
                continue
            ok = base - cur <= tol + EPS
            findings.append(Finding(name, agg.name, "-", "aggregate", key, base, cur, cur - base, tol, "accuracy",
                                    "ok" if ok else "regression", str(e["precision"]), str(e["device"])))
    return findings


def _name(e: dict) -> str:
    how = [f"{k}={e[k]}" for k in ("rerank_k", "prefilter") if e.get(k) is not None]
    return f"{e['model']} ({', '.join(how)})" if how else str(e["model"])


def only_models(entries: list[dict], names: list[str]) -> list[dict]:
    from harness.gate.check import select_models

    return select_models(entries, names, lambda e: e.get("model"))[0]
