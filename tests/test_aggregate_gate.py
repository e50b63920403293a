"""`vlbench check` gating a suite score: `baseline update` writes the suite's aggregates, a
later check recomputes them from the latest records with their recorded definition."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.results import store
from tests.test_check import SUITE, check_against, record, run_cli

GATE_SUITE = SUITE + "aggregate:\n  groups:\n    ret: [{task: retrieval}]\n"
# tiny-clip: retrieval enters as (31.25 + 41.0) / 2 = 36.125, zero-shot acc1 55.5 -> mean 45.8125
TINY = {"mean": 45.8125, "group:ret": 36.125, "type:retrieval": 36.125, "type:zeroshot": 55.5}
BIG = {"group:ret": 36.125, "type:retrieval": 36.125}  # big-clip has no zero-shot run: no mean


def write_runs(root: Path, acc1: float | None = 55.5) -> Path:
    store.save(root, record("tiny-clip", "retrieval"))
    store.save(root, record("big-clip", "retrieval"))
    if acc1 is not None:
        store.save(root, record("tiny-clip", "zeroshot", metrics={"acc1": acc1}))
    return root


@pytest.fixture
def baseline(tmp_path: Path, capsys) -> Path:
    suite = tmp_path / "gate.yaml"
    suite.write_text(GATE_SUITE, encoding="utf-8")
    out = tmp_path / "gate.json"
    code, printed, err = run_cli(capsys, "baseline", "update", "--suite", str(suite),
                                 "--results", str(write_runs(tmp_path / "base")), "--out", str(out))
    assert code == 0, err
    assert "3 runs and 2 suite score(s)" in printed
    return out


def _retune(path: Path, **tolerances) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["tolerances"].update(tolerances)
    path.write_text(json.dumps(raw), encoding="utf-8")


def test_baseline_holds_each_models_scores_and_their_definition(baseline: Path):
    raw = json.loads(baseline.read_text(encoding="utf-8"))
    aggs = {e["model"]: e for e in raw["aggregates"]}
    assert aggs["tiny-clip"]["scores"] == pytest.approx(TINY)
    assert aggs["big-clip"]["scores"] == pytest.approx(BIG)
    assert aggs["tiny-clip"]["aggregate"] == "gate" and aggs["tiny-clip"]["groups"] == {"ret": ["retrieval:synthetic/test"]}
    assert aggs["tiny-clip"]["tasks"] == [
        {"task": "retrieval", "dataset": "synthetic", "split": "test", "limit": None, "metric": "mean_R@1"},
        {"task": "zeroshot", "dataset": "synthetic", "split": "test", "limit": None, "metric": "acc1"}]
    assert raw["tolerances"]["aggregate"] == 0.5


def test_unchanged_runs_pass(baseline: Path, tmp_path: Path, capsys):
    code, out, _ = check_against(capsys, baseline, write_runs(tmp_path / "now"), "--no-throughput")
    assert code == 0, out
    # 26 run metrics (11 + 11 retrieval, 4 zero-shot) and 6 suite scores (4 tiny-clip, 2 big-clip)
    assert "0 regression(s), 32 ok" in out


def test_a_drop_of_the_mean_beyond_its_tolerance_fails(baseline: Path, tmp_path: Path, capsys):
    _retune(baseline, acc1=5.0, aggregate=1.0, **{"aggregate:mean": 0.3})  # acc1 -0.8 passes its own gate...
    code, out, _ = check_against(capsys, baseline, write_runs(tmp_path / "now", acc1=54.7), "--no-throughput")
    assert code == 1
    rows = [line.split() for line in out.splitlines() if line.startswith("REGRESSION")]
    assert len(rows) == 1  # ...and type:zeroshot's -0.8 within 1.0; the suite mean's -0.4 does not
    assert rows[0][1:4] + rows[0][5:9] == ["tiny-clip", "gate/-", "aggregate", "mean", "45.81", "45.41", "-0.40"]
    assert "1 regression(s), 31 ok" in out


def test_an_improvement_passes(baseline: Path, tmp_path: Path, capsys):
    code, out, _ = check_against(capsys, baseline, write_runs(tmp_path / "now", acc1=70.0), "--no-throughput")
    assert code == 0, out


def test_a_missing_task_is_a_regression_not_a_mean_over_fewer(baseline: Path, tmp_path: Path, capsys):
    code, out, _ = check_against(capsys, baseline, write_runs(tmp_path / "now", acc1=None), "--no-throughput")
    assert code == 1
    agg = [line for line in out.splitlines() if line.startswith("REGRESSION") and " aggregate " in line]
    assert [line.split()[5] for line in agg] == ["mean", "type:zeroshot"]
    assert all("no current run with the metric for zeroshot:synthetic/test" in line for line in agg)


def test_only_models_narrows_the_suite_scores(baseline: Path, tmp_path: Path, capsys):
    code, out, _ = check_against(capsys, baseline, write_runs(tmp_path / "now", acc1=None), "--no-throughput",
                                 "--model", "big-clip")
    assert code == 0, out
    assert "0 regression(s), 13 ok" in out  # big-clip: 11 retrieval metrics and 2 scores


@pytest.mark.parametrize("bad, message", [
    ({"aggregates": {}}, "'aggregates' must be a list"),
    ({"aggregates": [{"model": "m"}]}, "aggregates[0] must be an object with aggregate"),
    ({"aggregates": [{"aggregate": "a", "model": "m", "precision": "fp32", "device": "cpu", "tasks": [{"task": "t"}],
                      "scores": {"mean": 1.0}}]}, "aggregates[0].tasks must be"),
    ({"aggregates": [{"aggregate": "a", "model": "m", "precision": "fp32", "device": "cpu",
                      "tasks": [{"task": "t", "dataset": "d", "split": "s"}], "scores": {"mean": "high"}}]},
     "aggregates[0].scores must be a non-empty object of finite numbers"),
])
def test_malformed_aggregates_name_the_file(baseline: Path, tmp_path: Path, capsys, bad, message):
    raw = json.loads(baseline.read_text(encoding="utf-8"))
    baseline.write_text(json.dumps({**raw, **bad}), encoding="utf-8")
    code, _, err = check_against(capsys, baseline, write_runs(tmp_path / "now"), "--no-throughput")
    assert code == 2 and message in err and str(baseline) in err


def test_a_suite_scores_own_tolerance_survives_a_baseline_update(baseline: Path, tmp_path: Path, capsys):
    """A suite score's measured tolerance (tiny-clip-random's: benchmarks/RESULTS.md) is kept when
    `baseline update` rewrites the numbers, as a run entry's is; the other models' get none."""
    raw = json.loads(baseline.read_text(encoding="utf-8"))
    for e in raw["aggregates"]:
        if e["model"] == "tiny-clip":
            e["tolerances"] = {"aggregate": 3.0}
    baseline.write_text(json.dumps(raw), encoding="utf-8")
    suite = tmp_path / "gate.yaml"
    code, _, err = run_cli(capsys, "baseline", "update", "--suite", str(suite),
                           "--results", str(write_runs(tmp_path / "again", acc1=57.5)), "--out", str(baseline))
    assert code == 0, err
    aggs = {e["model"]: e for e in json.loads(baseline.read_text(encoding="utf-8"))["aggregates"]}
    assert aggs["tiny-clip"]["tolerances"] == {"aggregate": 3.0} and "tolerances" not in aggs["big-clip"]
    assert aggs["tiny-clip"]["scores"]["type:zeroshot"] == 57.5  # the numbers are the new records'
