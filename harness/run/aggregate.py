"""Suite scores: one number per model over a suite's tasks, declared by the suite file's
``aggregate`` block, as the field's suite benchmarks summarise themselves.

- DataComp-style (Gadre et al. 2023, "DataComp: In search of the next generation of multimodal
  datasets"): the plain mean of each task's main metric over every task of the suite (their
  suite: 38 tasks), plus the same mean over declared groups of datasets (their tables report
  ImageNet, "ImageNet dist. shifts", VTAB and retrieval beside the 38-task average). Their
  retrieval number is the mean of image and text R@1; a record whose main metric is RSUM
  (a sum of six recalls, 0-600) enters as that mean instead, so retrieval is not weighed six times.
- MTEB-style (Muennighoff et al. 2023): the mean per task type (here: the vlbench task:
  retrieval, zeroshot, linear_probe, ...).
- A Borda rank (the MMTEB leaderboard's default ordering, Enevoldsen et al. 2025): per task,
  each model gets one point per model it beats (half a point per tie); points are summed and
  ranked, over the models that have every task.

A model that lacks a task has no suite mean (nor a mean of any group or type that holds the
task) and is listed with what it lacks: never averaged over fewer tasks. A "model" here is a
*system*: the model with its precision and device, and for cross-encoders its reranking setup
(rerank_k, prefilter); a task that does not rerank (zero-shot, caption selection) counts for
every reranking setup of the model.

Everything here is pure (plain mappings in, dataclasses out) and numpy-generic: the same
functions average point values (floats) and bootstrap replicates (arrays).

YAML (in a suite file)::

    aggregate:
      name: datacomp              # default: the suite's name
      tasks: [imagenet1k, {task: retrieval}]   # default: every run of the suite
      metric: {retrieval: mean_R@1, cars: balanced_acc}   # by task type or dataset name
      groups:
        "ImageNet & shifts": [imagenet1k, imagenetv2, imagenet_sketch]
        retrieval: [{task: retrieval}]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.core.errors import UserError
from harness.metrics.keys import MetricKey

MEAN_R1 = "mean_R@1"  # DataComp's retrieval main metric: (t2i_R@1 + i2t_R@1) / 2
# a main metric on another scale than the others' 0-100 points, and what enters the mean instead
SCALE_SUBSTITUTES = {MetricKey.RSUM.value: MEAN_R1}
LOWER_IS_BETTER = ("_medr", "_meanr")


class AggregateError(UserError, ValueError):
    """A malformed ``aggregate`` block; the message names the suite file and the key."""


@dataclass(frozen=True)
class Selector:
    """Picks a suite's tasks: a dataset name (the string form), and/or a task and split."""

    dataset: str | None = None
    task: str | None = None
    split: str | None = None

    def matches(self, t: AggTask) -> bool:
        return all(want is None or want == have for want, have in
                   ((self.dataset, t.dataset), (self.task, t.task), (self.split, t.split)))

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in (("dataset", self.dataset), ("task", self.task),
                                                  ("split", self.split)) if v is not None)


@dataclass(frozen=True)
class AggregateSpec:
    """The ``aggregate`` block as written (names not yet resolved against registries)."""

    name: str
    tasks: tuple[Selector, ...] | None = None          # None: every run of the suite
    groups: tuple[tuple[str, tuple[Selector, ...]], ...] = ()
    metric: tuple[tuple[str, str], ...] = ()            # (task type or dataset, metric key)


@dataclass(frozen=True, order=True)
class AggTask:
    """One task of an aggregate: a dataset split under one vlbench task (and --limit)."""

    task: str
    dataset: str
    split: str | None
    limit: int | None = None

    @property
    def key(self) -> str:
        """A stable name (page headers, baselines, bootstrap seeds).

        >>> AggTask("zeroshot", "cifar10", "test").key, AggTask("retrieval", "coco", "test", 50).key
        ('zeroshot:cifar10/test', 'retrieval:coco/test [limit 50]')
        """
        limit = f" [limit {self.limit}]" if self.limit is not None else ""
        return f"{self.task}:{self.dataset}/{self.split or '*'}{limit}"


@dataclass(frozen=True)
class Aggregate:
    """A resolved aggregate: its tasks, the metric each enters with (None: the record's main
    metric), its groups, and the suite's precision/device when the suite fixes them."""

    name: str
    tasks: tuple[AggTask, ...]
    groups: tuple[tuple[str, tuple[AggTask, ...]], ...] = ()
    metric: tuple[tuple[AggTask, str], ...] = ()
    precision: str | None = None
    device: str | None = None

    def metric_for(self, t: AggTask) -> str | None:
        return dict(self.metric).get(t)

    @property
    def types(self) -> tuple[tuple[str, tuple[AggTask, ...]], ...]:
        """(task type, its tasks) in first-seen order: the MTEB-style breakdown."""
        out: dict[str, list[AggTask]] = {}
        for t in self.tasks:
            out.setdefault(t.task, []).append(t)
        return tuple((k, tuple(v)) for k, v in out.items())


# ---- parsing ---------------------------------------------------------------------------------

_KEYS = {"name", "tasks", "groups", "metric"}


def _selector(raw: Any, where: str) -> Selector:
    if isinstance(raw, str) and raw:
        return Selector(dataset=raw)
    if isinstance(raw, dict) and raw and set(raw) <= {"dataset", "task", "split"} and all(
            isinstance(v, str) and v for v in raw.values()):
        return Selector(**raw)
    raise AggregateError(f"{where}: a dataset name or a mapping of dataset/task/split names, got {raw!r}")


def _selectors(raw: Any, where: str) -> tuple[Selector, ...]:
    if isinstance(raw, (str, dict)):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise AggregateError(f"{where}: a non-empty list of dataset names or task selectors, got {raw!r}")
    return tuple(_selector(x, f"{where}[{i}]") for i, x in enumerate(raw))


def parse_aggregate(raw: Any, suite_name: str, origin: str) -> AggregateSpec:
    """The ``aggregate`` block of a suite file (``{}`` or ``true``: every task, no groups).

    >>> spec = parse_aggregate({"groups": {"VTAB": ["cifar100", {"dataset": "svhn"}]}}, "s", "s.yaml")
    >>> spec.name, [(g, [str(s) for s in sel]) for g, sel in spec.groups]
    ('s', [('VTAB', ['dataset=cifar100', 'dataset=svhn'])])
    """
    where = f"{origin}: aggregate"
    if raw is True or raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise AggregateError(f"{where}: must be a mapping (name, tasks, groups, metric), got {raw!r}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise AggregateError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    name = raw.get("name", suite_name)
    if not isinstance(name, str) or not name:
        raise AggregateError(f"{where}.name: a non-empty string, got {name!r}")
    tasks = _selectors(raw["tasks"], f"{where}.tasks") if "tasks" in raw else None
    groups = raw.get("groups") or {}
    if not isinstance(groups, dict) or not all(isinstance(g, str) and g for g in groups):
        raise AggregateError(f"{where}.groups: a mapping of group name -> datasets, got {groups!r}")
    metric = raw.get("metric") or {}
    if not isinstance(metric, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                               for k, v in metric.items()):
        raise AggregateError(f"{where}.metric: a mapping of task type or dataset -> metric key, got {metric!r}")
    for k, v in metric.items():
        if v.endswith(LOWER_IS_BETTER):
            raise AggregateError(f"{where}.metric[{k!r}]: {v!r} is a rank (lower is better); "
                                 f"an aggregate averages higher-is-better scores")
    return AggregateSpec(name, tasks, tuple((g, _selectors(sel, f"{where}.groups[{g!r}]"))
                                            for g, sel in groups.items()), tuple(metric.items()))


def resolve(spec: AggregateSpec, runs: Iterable[AggTask], origin: str,
            precision: str | None = None, device: str | None = None) -> Aggregate:
    """``spec`` over a suite's runs (names already canonical; see :func:`suite_aggregate`).
    Every selector must pick at least one task, so a misspelt dataset is an error, not an
    empty group.

    >>> runs = [AggTask("retrieval", "coco", "test"), AggTask("zeroshot", "cifar10", "test")]
    >>> agg = resolve(parse_aggregate({"groups": {"ret": [{"task": "retrieval"}]}}, "s", "s.yaml"), runs, "s.yaml")
    >>> [t.key for t in agg.tasks], [(g, len(ts)) for g, ts in agg.groups]
    (['retrieval:coco/test', 'zeroshot:cifar10/test'], [('ret', 1)])
    """
    runs = list(dict.fromkeys(runs))
    where = f"{origin}: aggregate"

    def pick(selectors: tuple[Selector, ...], what: str, among: list[AggTask]) -> tuple[AggTask, ...]:
        for s in selectors:
            if not any(s.matches(t) for t in among):
                have = sorted({t.dataset for t in among})
                raise AggregateError(f"{where}.{what}: {s} matches none of the aggregate's tasks "
                                     f"(datasets: {', '.join(have)})")
        return tuple(t for t in among if any(s.matches(t) for s in selectors))

    tasks = list(pick(spec.tasks, "tasks", runs)) if spec.tasks is not None else runs
    if not tasks:
        raise AggregateError(f"{where}: no tasks to aggregate")
    groups = tuple((g, pick(sel, f"groups[{g!r}]", tasks)) for g, sel in spec.groups)
    names = {t.task for t in tasks} | {t.dataset for t in tasks}
    for key, _ in spec.metric:
        if key not in names:
            raise AggregateError(f"{where}.metric: {key!r} is neither a task type nor a dataset of the "
                                 f"aggregate ({', '.join(sorted(names))})")
    by_key = dict(spec.metric)
    metric = tuple((t, by_key.get(t.dataset) or by_key[t.task]) for t in tasks
                   if t.dataset in by_key or t.task in by_key)
    return Aggregate(spec.name, tuple(tasks), groups, metric, precision, device)


def suite_aggregate(suite) -> Aggregate | None:
    """A parsed suite's aggregate, its names resolved as the runs resolve them (aliases,
    each dataset's default split); None when the suite declares none."""
    if suite.aggregate is None:
        return None
    from harness.datasets import DATASETS
    from harness.tasks import TASKS

    canon = lambda registry, name: registry.resolve(name) if name in registry else name  # noqa: E731
    runs = []
    for e in suite.entries:
        dataset = canon(DATASETS, e.dataset)
        split = e.split or (DATASETS.get(dataset).default_split if dataset in DATASETS else None)
        limit = e.limit if e.limit is not None else suite.options.get("limit")
        runs.append(AggTask(canon(TASKS, e.task), dataset, split, limit))
    device = str(suite.options["device"]).split(":")[0] if suite.options.get("device") else None
    precision = str(suite.options["precision"]) if suite.options.get("precision") else None
    return resolve(suite.aggregate, runs, suite.path or suite.name, precision, device)


# ---- runs -> systems -> values ---------------------------------------------------------------

@dataclass(frozen=True)
class RunRow:
    """What aggregation needs of one record (the leaderboard's frame row or a ResultRecord)."""

    model: str
    dataset: str
    split: str | None
    task: str
    metrics: Mapping[str, float]
    main_metric: str | None
    precision: str | None = None
    device: str | None = None
    limit: int | None = None
    rerank_k: int | None = None
    prefilter: str | None = None
    kind: str | None = None
    ref: Any = field(default=None, compare=False)  # the caller's handle (frame index, record)

    @property
    def agg_task(self) -> AggTask:
        return AggTask(self.task, self.dataset, self.split, self.limit)


@dataclass(frozen=True)
class System:
    """A row of the aggregate: a model on one precision/device, with one reranking setup."""

    model: str
    precision: str
    device: str
    rerank_k: int | None = None
    prefilter: str | None = None
    kind: str | None = field(default=None, compare=False)


def collect(agg: Aggregate, rows: Iterable[RunRow]) -> dict[System, dict[AggTask, RunRow]]:
    """The runs of each system on the aggregate's tasks (``rows`` oldest first: the latest of a
    task wins). A model's reranking setups are its systems; a run with none (a task that does
    not rerank) belongs to each of them.

    >>> t = AggTask("retrieval", "d", "test")
    >>> rows = [RunRow("blip", "d", "test", "retrieval", {}, "rsum", "fp32", "cpu", rerank_k=k) for k in (0, 16)]
    >>> rows.append(RunRow("blip", "d", "test", "caption_selection", {}, "acc", "fp32", "cpu"))
    >>> agg = Aggregate("a", (t, AggTask("caption_selection", "d", "test")))
    >>> {s.rerank_k: sorted(x.key for x in v) for s, v in collect(agg, rows).items()}
    {0: ['caption_selection:d/test', 'retrieval:d/test'], 16: ['caption_selection:d/test', 'retrieval:d/test']}
    """
    wanted = set(agg.tasks)
    by_model: dict[tuple, list[RunRow]] = {}
    for r in rows:
        if r.agg_task not in wanted or any(want and have != want for want, have in
                                           ((agg.precision, r.precision), (agg.device, r.device))):
            continue
        by_model.setdefault((r.model, str(r.precision), str(r.device)), []).append(r)
    out: dict[System, dict[AggTask, RunRow]] = {}
    for (model, precision, device), runs in by_model.items():
        kind = next((r.kind for r in reversed(runs) if r.kind), None)
        setups = {(r.rerank_k, r.prefilter) for r in runs if r.rerank_k is not None or r.prefilter is not None}
        for rerank_k, prefilter in sorted(setups or {(None, None)}, key=str):
            mine = out.setdefault(System(model, precision, device, rerank_k, prefilter, kind), {})
            for r in runs:
                if (r.rerank_k is None and r.prefilter is None) or (r.rerank_k, r.prefilter) == (rerank_k, prefilter):
                    mine[r.agg_task] = r
    return dict(sorted(out.items(), key=lambda kv: _order(kv[0])))


def _order(s: System) -> tuple:
    return (s.model, s.precision, s.device, -1 if s.rerank_k is None else s.rerank_k, s.prefilter or "")


def entry_metric(agg: Aggregate, t: AggTask, main_metric: str | None) -> str | None:
    """The metric task ``t`` enters the aggregate with: the aggregate's choice for it, else
    the run's main metric, put on the common 0-100 scale (``SCALE_SUBSTITUTES``).

    >>> agg = Aggregate("a", (AggTask("retrieval", "coco", "test"),))
    >>> entry_metric(agg, agg.tasks[0], "rsum"), entry_metric(agg, agg.tasks[0], "t2i_R@1")
    ('mean_R@1', 't2i_R@1')
    """
    chosen = agg.metric_for(t) or main_metric
    return SCALE_SUBSTITUTES.get(chosen, chosen) if chosen else None


def metric_value(metrics: Mapping[str, float], metric: str) -> float | None:
    """``metrics[metric]``, or DataComp's mean R@1 from its two recalls when not stored;
    None when absent or not finite.

    >>> metric_value({"t2i_R@1": 40.0, "i2t_R@1": 50.0}, "mean_R@1"), metric_value({}, "acc1")
    (45.0, None)
    """
    value = metrics.get(metric)
    if value is None and metric == MEAN_R1:
        t2i, i2t = metrics.get(MetricKey.T2I_R1.value), metrics.get(MetricKey.I2T_R1.value)
        value = None if t2i is None or i2t is None else (t2i + i2t) / 2
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
        return None
    return float(value)


def task_values(agg: Aggregate, runs: Mapping[AggTask, RunRow]) -> tuple[dict, dict, dict]:
    """One system's ``(values, metrics, missing)``: each task's number as it enters the mean,
    the metric it entered with, and why a run that exists gave no number.

    >>> t = AggTask("retrieval", "coco", "test")
    >>> task_values(Aggregate("a", (t,)), {t: RunRow("m", "coco", "test", "retrieval",
    ...     {"t2i_R@1": 30.0, "i2t_R@1": 40.0, "rsum": 300.0}, "rsum")})[:2]
    ({AggTask(task='retrieval', dataset='coco', split='test', limit=None): 35.0}, {AggTask(task='retrieval', dataset='coco', split='test', limit=None): 'mean_R@1'})
    """
    values, metrics, missing = {}, {}, {}
    for t, run in runs.items():
        metric = entry_metric(agg, t, run.main_metric)
        value = metric_value(run.metrics, metric) if metric else None
        if value is None:
            missing[t.key] = f"its run has no {metric or 'main metric'}"
        else:
            values[t], metrics[t] = value, metric
    return values, metrics, missing


# ---- scores --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Score:
    """One system's aggregate: ``mean`` over every task, per group and per task type (None
    where a task is missing), and what is missing (task key -> why)."""

    mean: Any
    groups: dict[str, Any]
    types: dict[str, Any]
    missing: dict[str, str]

    @property
    def complete(self) -> bool:
        return not self.missing


def mean_of(values: Mapping[AggTask, Any], tasks: Iterable[AggTask]) -> Any:
    """The plain mean of ``values`` over ``tasks``; None when any task has no value (never a
    mean over fewer). Works on floats and on equally long arrays (bootstrap replicates).

    >>> a, b = AggTask("zeroshot", "a", "t"), AggTask("zeroshot", "b", "t")
    >>> mean_of({a: 60.0, b: 70.0}, [a, b]), mean_of({a: 60.0}, [a, b])
    (65.0, None)
    """
    tasks = list(tasks)
    if not tasks or any(values.get(t) is None for t in tasks):
        return None
    return sum(values[t] for t in tasks) / len(tasks)


def score(agg: Aggregate, values: Mapping[AggTask, Any], missing: Mapping[str, str] | None = None) -> Score:
    """The DataComp-style mean and group means and the MTEB-style per-type means of one
    system's task ``values``; a task without a value is listed in ``missing`` (with the
    caller's reason if given) and every mean that needs it is None.

    >>> ret, zs1, zs2 = (AggTask("retrieval", "coco", "test"), AggTask("zeroshot", "cifar10", "test"),
    ...                  AggTask("zeroshot", "imagenet", "val"))
    >>> agg = Aggregate("a", (ret, zs1, zs2), groups=(("ImageNet", (zs2,)),))
    >>> s = score(agg, {ret: 50.0, zs1: 90.0, zs2: 70.0})
    >>> s.mean, s.groups, s.types
    (70.0, {'ImageNet': 70.0}, {'retrieval': 50.0, 'zeroshot': 80.0})
    >>> s = score(agg, {ret: 50.0, zs1: 90.0})
    >>> s.mean, s.groups, s.types, s.missing
    (None, {'ImageNet': None}, {'retrieval': 50.0, 'zeroshot': None}, {'zeroshot:imagenet/val': 'no run'})
    """
    missing = dict(missing or {})
    gaps = {t.key: missing.get(t.key, "no run") for t in agg.tasks if values.get(t) is None}
    return Score(mean_of(values, agg.tasks), {g: mean_of(values, ts) for g, ts in agg.groups},
                 {k: mean_of(values, ts) for k, ts in agg.types}, gaps)


def borda(values: Mapping[Any, Mapping[AggTask, float]], tasks: Iterable[AggTask]) -> dict[Any, tuple[float, int]]:
    """Borda count and rank of the systems that have every task: per task, a system gets one
    point per system it beats and half a point per tie; the points are summed, and the rank
    is 1 + the number of systems with more points (ties share a rank).

    >>> a, b = AggTask("zeroshot", "a", "t"), AggTask("zeroshot", "b", "t")
    >>> borda({"x": {a: 90.0, b: 10.0}, "y": {a: 50.0, b: 30.0}, "z": {a: 50.0, b: 20.0},
    ...        "w": {a: 99.0}}, [a, b])  # a: x 2, y 0.5, z 0.5; b: y 2, z 1, x 0; w lacks b
    {'x': (2.0, 2), 'y': (2.5, 1), 'z': (1.5, 3)}
    """
    tasks = list(tasks)
    full = {s: v for s, v in values.items() if all(v.get(t) is not None for t in tasks)}
    points = {s: 0.0 for s in full}
    for t in tasks:
        for s, v in full.items():
            points[s] += sum(1.0 if v[t] > o[t] else 0.5 if v[t] == o[t] else 0.0
                             for other, o in full.items() if other != s)
    return {s: (p, 1 + sum(q > p for q in points.values())) for s, p in points.items()}

