"""Suite scores (harness.run.aggregate, leaderboard.aggregate): a DataComp-style table computed by
hand, with a missing task; the suite file's aggregate block and its errors; intervals combined
over tasks against the per-task bootstrap functions."""

from __future__ import annotations

import numpy as np
import pytest

from harness.run.aggregate import (
    AggregateError,
    AggTask,
    RunRow,
    borda,
    collect,
    parse_aggregate,
    resolve,
    score,
    suite_aggregate,
    task_values,
)
from harness.run.suites import SuiteError, load_suite_file, parse_suite

# A small DataComp-like suite: ImageNet and a shift, two VTAB sets (Flowers ranked by mean
# per-class recall, DataComp's convention for it) and one retrieval set.
IN1K, INV2 = AggTask("zeroshot", "imagenet1k", "test"), AggTask("zeroshot", "imagenetv2", "test")
CIFAR, FLOWERS = AggTask("zeroshot", "cifar100", "test"), AggTask("zeroshot", "flowers", "test")
FLICKR = AggTask("retrieval", "flickr30k", "test")
RUNS = [IN1K, INV2, CIFAR, FLOWERS, FLICKR]
BLOCK = {"metric": {"flowers": "balanced_acc"},
         "groups": {"ImageNet & shifts": ["imagenet1k", "imagenetv2"], "VTAB": ["cifar100", "flowers"],
                    "retrieval": [{"task": "retrieval"}]}}

# model -> dataset -> metrics of its record (acc1 for zero-shot; retrieval's main metric is RSUM)
TABLE = {
    "A": {"imagenet1k": 70.0, "imagenetv2": 60.0, "cifar100": 80.0, "flowers": (50.0, 40.0), "flickr30k": (50.0, 70.0)},
    "B": {"imagenet1k": 65.0, "imagenetv2": 55.0, "cifar100": 85.0, "flowers": (30.0, 60.0), "flickr30k": (40.0, 60.0)},
    "C": {"imagenet1k": 65.0, "imagenetv2": 58.0, "cifar100": 70.0, "flowers": (99.0, 45.0)},  # no flickr30k run
}
# By hand: retrieval enters as (t2i_R@1 + i2t_R@1) / 2, Flowers as balanced_acc.
#   A: 70 60 80 40 60 -> mean 310/5 = 62.0; ImageNet 65.0, VTAB 60.0, retrieval 60.0; zeroshot 62.5
#   B: 65 55 85 60 50 -> mean 315/5 = 63.0; ImageNet 60.0, VTAB 72.5, retrieval 50.0; zeroshot 66.25
#   C: no mean (flickr30k missing);         ImageNet 61.5, VTAB 57.5, retrieval -;    zeroshot 59.5
#   Borda over A and B (C lacks a task): A wins imagenet1k, imagenetv2, flickr30k (3), B cifar, flowers (2)
EXPECTED = {
    "A": (62.0, {"ImageNet & shifts": 65.0, "VTAB": 60.0, "retrieval": 60.0}, {"zeroshot": 62.5, "retrieval": 60.0}),
    "B": (63.0, {"ImageNet & shifts": 60.0, "VTAB": 72.5, "retrieval": 50.0}, {"zeroshot": 66.25, "retrieval": 50.0}),
    "C": (None, {"ImageNet & shifts": 61.5, "VTAB": 57.5, "retrieval": None}, {"zeroshot": 59.5, "retrieval": None}),
}


def approx(x):
    if isinstance(x, dict):
        return {k: approx(v) for k, v in x.items()}
    return None if x is None else pytest.approx(x)


def run_rows(table=TABLE) -> list[RunRow]:
    rows = []
    for model, datasets in table.items():
        for dataset, v in datasets.items():
            if dataset == "flickr30k":
                metrics = {"t2i_R@1": v[0], "i2t_R@1": v[1], "rsum": 6 * sum(v)}
                rows.append(RunRow(model, dataset, "test", "retrieval", metrics, "rsum", "fp32", "cpu"))
            else:
                metrics = {"acc1": v[0], "balanced_acc": v[1]} if isinstance(v, tuple) else {"acc1": v}
                rows.append(RunRow(model, dataset, "test", "zeroshot", metrics, "acc1", "fp32", "cpu"))
    return rows


def scores(agg, rows):
    systems = collect(agg, rows)
    values = {s.model: task_values(agg, runs) for s, runs in systems.items()}
    return {m: score(agg, v[0], v[2]) for m, v in values.items()}, {m: v[0] for m, v in values.items()}


def test_datacomp_table_by_hand_with_a_missing_task():
    agg = resolve(parse_aggregate(BLOCK, "mini-datacomp", "s.yaml"), RUNS, "s.yaml")
    got, values = scores(agg, run_rows())
    for model, (mean, groups, types) in EXPECTED.items():
        s = got[model]
        assert (s.mean, s.groups, s.types) == (approx(mean), approx(groups), approx(types)), model
    assert got["C"].missing == {"retrieval:flickr30k/test": "no run"} and not got["C"].complete
    assert got["A"].complete and got["B"].complete
    assert values["A"][FLOWERS] == 40.0 and values["A"][FLICKR] == 60.0  # balanced_acc; mean R@1, not RSUM
    assert borda(values, agg.tasks) == {"A": (3.0, 1), "B": (2.0, 2)}  # C is not ranked


def test_a_run_without_the_metric_is_missing_with_its_reason():
    agg = resolve(parse_aggregate(BLOCK, "s", "s.yaml"), RUNS, "s.yaml")
    table = {"A": {**TABLE["A"], "flowers": 50.0}}  # a Flowers record without balanced_acc
    got, _ = scores(agg, run_rows(table))
    assert got["A"].mean is None and got["A"].groups["VTAB"] is None
    assert got["A"].missing == {"zeroshot:flowers/test": "its run has no balanced_acc"}
    assert got["A"].groups["ImageNet & shifts"] == pytest.approx(65.0)


def test_precision_device_and_rerank_setups_are_separate_systems():
    agg = resolve(parse_aggregate({}, "s", "s.yaml"), [FLICKR, IN1K], "s.yaml")
    rows = [RunRow("blip", "flickr30k", "test", "retrieval", {"t2i_R@1": 40.0, "i2t_R@1": 50.0}, "rsum", "fp32", "cpu",
                   rerank_k=k) for k in (0, 64)]
    rows.append(RunRow("blip", "imagenet1k", "test", "zeroshot", {"acc1": 30.0}, "acc1", "fp32", "cpu"))
    rows.append(RunRow("blip", "imagenet1k", "test", "zeroshot", {"acc1": 31.0}, "acc1", "fp16", "cuda"))
    systems = collect(agg, rows)
    assert [(s.rerank_k, s.precision, sorted(t.dataset for t in runs)) for s, runs in systems.items()] == [
        (None, "fp16", ["imagenet1k"]), (0, "fp32", ["flickr30k", "imagenet1k"]),
        (64, "fp32", ["flickr30k", "imagenet1k"])]
    fixed = resolve(parse_aggregate({}, "s", "s.yaml"), [FLICKR, IN1K], "s.yaml", precision="fp16")
    assert [s.precision for s in collect(fixed, rows)] == ["fp16"]  # the suite fixes the precision


@pytest.mark.parametrize("block, message", [
    ({"weights": 1}, "unknown key(s) ['weights']"),
    ({"groups": {"VTAB": []}}, "groups['VTAB']: a non-empty list"),
    ({"groups": {"VTAB": [{"datset": "x"}]}}, "groups['VTAB'][0]: a dataset name or a mapping"),
    ({"metric": {"retrieval": "t2i_medr"}}, "is a rank (lower is better)"),
    ({"name": ""}, "aggregate.name: a non-empty string"),
    ("yes", "must be a mapping"),
])
def test_malformed_blocks_name_the_key(block, message):
    with pytest.raises(AggregateError, match=None) as err:
        parse_aggregate(block, "s", "bench/s.yaml")
    assert message in str(err.value) and "bench/s.yaml" in str(err.value)


@pytest.mark.parametrize("block, message", [
    ({"groups": {"VTAB": ["cifar10"]}}, "groups['VTAB']: dataset=cifar10 matches none of the aggregate's tasks"),
    ({"tasks": [{"task": "linear_probe"}]}, "tasks: task=linear_probe matches none"),
    ({"metric": {"flower": "balanced_acc"}}, "'flower' is neither a task type nor a dataset"),
])
def test_selectors_must_match_a_task(block, message):
    with pytest.raises(AggregateError) as err:
        resolve(parse_aggregate(block, "s", "s.yaml"), RUNS, "s.yaml")
    assert message in str(err.value)


def test_tasks_selector_narrows_the_suite():
    agg = resolve(parse_aggregate({"tasks": [{"task": "zeroshot"}]}, "s", "s.yaml"), RUNS, "s.yaml")
    assert agg.tasks == (IN1K, INV2, CIFAR, FLOWERS)


def test_suite_file_aggregate_resolves_aliases_and_default_splits(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("runs:\n  - {models: [tiny-clip-synth], datasets: [synthetic], tasks: [retrieval, zeroshot]}\n"
                    "  - {models: [tiny-clip-synth], datasets: [synthetic], tasks: [zeroshot], limit: 50}\n"
                    "options: {precision: fp32}\naggregate: {groups: {ret: [{task: retrieval}]}}\n", encoding="utf-8")
    agg = suite_aggregate(load_suite_file(path))
    assert agg.name == "mine" and agg.precision == "fp32"
    assert [t.key for t in agg.tasks] == ["retrieval:synthetic/test", "zeroshot:synthetic/test",
                                          "zeroshot:synthetic/test [limit 50]"]
    with pytest.raises(SuiteError, match="aggregate: unknown key"):
        parse_suite({"runs": [{"models": "m", "datasets": "d", "tasks": "t"}], "aggregate": {"x": 1}}, "bad.yaml")
    assert parse_suite({"runs": [{"models": "m", "datasets": "d", "tasks": "t"}]}, "plain.yaml").aggregate is None


def test_default_suite_declares_an_aggregate_over_its_tasks():
    from harness.run.suites import get_suite

    agg = suite_aggregate(get_suite("default"))
    assert {t.task for t in agg.tasks} == {"retrieval", "zeroshot", "caption_selection", "linear_probe"}
    assert all(ts for _, ts in agg.groups)


# ---- intervals ------------------------------------------------------------------------------

def _records(tmp_path, with_sidecar=True):
    """Two tasks (synthetic retrieval + zero-shot) for two models, from the page fixtures."""
    from harness.results import store
    from tests import lb_fixtures as F

    saved = {}
    for i, spec in enumerate([F.Spec("m1", "clip", quality=0.6), F.Spec("m2", "clip", quality=0.4)]):
        ret = F.retrieval_outcomes(spec, seed=40 + i)
        zs = F.zeroshot_outcomes(spec, seed=50 + i)
        when = F.T0
        for task, per_query, metrics in (("retrieval", ret, F.retrieval_metrics(ret)),
                                         ("zeroshot", zs, F.zeroshot_metrics(zs))):
            rec = F.make(spec, "synthetic", "test", task, metrics, when)
            path = store.save(tmp_path, rec, per_query if with_sidecar or task == "retrieval" else None)
            saved[(spec.model, task)] = (path, per_query)
    return saved


def _agg():
    from harness.run.aggregate import Aggregate

    ret, zs = AggTask("retrieval", "synthetic", "test"), AggTask("zeroshot", "synthetic", "test")
    return Aggregate("two", (ret, zs), groups=(("retrieval", (ret,)),)), ret, zs


def test_combined_interval_averages_each_tasks_own_resamples(tmp_path):
    from leaderboard import load
    from leaderboard.aggregate import suite_scores, task_seed
    from leaderboard.stats import _resampled_stats, _sum_of_means, sum_of_means_ci
    from leaderboard.uncertainty import UncertaintyOptions

    saved = _records(tmp_path)
    agg, ret, zs = _agg()
    opts = UncertaintyOptions(n_boot=400, seed=3)
    rows = {r.label: r for r in suite_scores(load(tmp_path), agg, opts)}
    assert list(rows) == ["m1", "m2"]  # best mean first
    for model in ("m1", "m2"):
        ranks, zs_q = saved[(model, "retrieval")][1], saved[(model, "zeroshot")][1]
        t2i, i2t = np.array(ranks["t2i_rank"]), np.array(ranks["i2t_rank"])
        correct = np.array(zs_q["correct"], dtype=float)
        mean_r1 = (100 * (t2i <= 1).mean() + 100 * (i2t <= 1).mean()) / 2
        r = rows[model]
        assert r.values == {ret: pytest.approx(mean_r1), zs: pytest.approx(100 * correct.mean())}
        assert r.score.mean == pytest.approx((mean_r1 + 100 * correct.mean()) / 2)
        # one task: exactly the per-task interval function with that task's seed
        assert r.intervals["group:retrieval"] == pytest.approx(
            sum_of_means_ci([50.0 * (t2i <= 1), 50.0 * (i2t <= 1)], n_boot=400, seed=task_seed(3, ret)))
        # two tasks: percentiles of the mean of each task's independent replicates
        a = _sum_of_means([50.0 * (t2i <= 1), 50.0 * (i2t <= 1)], 400, task_seed(3, ret))
        b = _resampled_stats(100.0 * correct, lambda s: s.mean(axis=-1), 400, task_seed(3, zs))
        assert r.intervals["mean"] == pytest.approx(tuple(np.quantile((a + b) / 2, [0.025, 0.975])))
        lo, hi = r.intervals["mean"]
        assert lo < r.score.mean < hi
        assert r.borda == ((2.0, 1) if model == "m1" else (0.0, 2))


def test_a_task_without_outcomes_leaves_the_mean_without_interval(tmp_path):
    from leaderboard import load
    from leaderboard.aggregate import suite_scores

    _records(tmp_path, with_sidecar=False)  # zero-shot saved without its per-query file
    agg, ret, zs = _agg()
    r = suite_scores(load(tmp_path), agg)[0]
    assert r.score.mean is not None and r.intervals["mean"] is None
    assert r.intervals["group:retrieval"] is not None
    assert list(r.no_interval) == ["zeroshot:synthetic/test"]
