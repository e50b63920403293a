"""Regression gate: `vlbench check` against a baseline, and `vlbench baseline update`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.gate import check
from harness.results import store
from harness.results.records import ResultRecord
from tests.test_leaderboard import RETRIEVAL, make_record

RETRIEVAL_R1 = RETRIEVAL["t2i_R@1"]

RUNS = [("tiny-clip", "retrieval"), ("tiny-clip", "zeroshot"), ("big-clip", "retrieval")]
SUITE = """name: gate
description: fixture suite for the regression gate
runs:
  - models: [tiny-clip, big-clip]
    datasets: [synthetic]
    tasks: [retrieval]
    split: test
  - models: tiny-clip
    datasets: synthetic
    tasks: zeroshot
    split: test
"""


def record(model: str, task: str, metrics: dict | None = None, ips: float = 1.0, device_name: str = "cpu",
           created_at: str = "2025-01-02T03:04:05+00:00", run_key: str | None = None) -> ResultRecord:
    """A fixture record; ``ips`` scales the throughput of every stage."""
    raw = make_record(model, task=task, created_at=created_at, run_key=run_key)
    if metrics:
        raw["metrics"].update(metrics)
    for timing in raw["timings"].values():
        timing["items_per_s"] *= ips
    raw["environment"]["device_name"] = device_name
    return ResultRecord.from_dict(raw)


def populate(root: Path, skip: tuple = (), **changes) -> Path:
    """Write the fixture runs into ``root``; ``changes`` apply to tiny-clip's retrieval run."""
    for model, task in RUNS:
        if (model, task) not in skip:
            store.save(root, record(model, task, **(changes if (model, task) == RUNS[0] else {})))
    return root


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def baseline(tmp_path: Path, capsys) -> Path:
    """A baseline written by `vlbench baseline update` from the unchanged fixture runs."""
    suite = tmp_path / "gate.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    out = tmp_path / "baselines" / "gate.json"
    code, _, err = run_cli(capsys, "baseline", "update", "--suite", str(suite),
                           "--results", str(populate(tmp_path / "base")), "--out", str(out))
    assert code == 0, err
    return out


def check_against(capsys, baseline: Path, results: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "check", "--baseline", str(baseline), "--results", str(results), *extra)


def test_baseline_file_format(baseline: Path):
    raw = json.loads(baseline.read_text(encoding="utf-8"))
    assert raw["schema_version"] == check.BASELINE_SCHEMA_VERSION and raw["suite"] == "gate"
    assert raw["created_at"] and raw["tolerances"] == check.DEFAULT_TOLERANCES
    assert len(raw["entries"]) == 3
    entry = next(e for e in raw["entries"] if e["model"] == "tiny-clip" and e["task"] == "retrieval")
    assert {k: entry[k] for k in ("dataset", "split", "precision", "device")} == {
        "dataset": "synthetic", "split": "test", "precision": "fp32", "device": "cpu"}
    assert entry["metrics"] == RETRIEVAL
    assert entry["throughput"] == {"image_encode": 123.4, "text_encode": 2500.0}
    assert entry["machine"]["device_name"] == "cpu" and entry["machine"]["torch"] == "2.5.1"
    assert not list(baseline.parent.glob(".*"))  # the atomic write left no temp file


def test_unchanged_rerun_passes(baseline, tmp_path, capsys):
    rerun = tmp_path / "rerun"
    for model, task in RUNS:  # a later rerun with the same numbers
        store.save(rerun, record(model, task, created_at="2025-02-01T00:00:00+00:00"))
    code, out, _ = check_against(capsys, baseline, rerun)
    assert code == 0, out
    assert "0 regression(s)" in out and "REGRESSION" not in out


def test_accuracy_drop_fails_and_names_model_and_metric(baseline, tmp_path, capsys):
    results = populate(tmp_path / "cur", metrics={"t2i_R@1": RETRIEVAL["t2i_R@1"] - 1.0})
    code, out, _ = check_against(capsys, baseline, results)
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("REGRESSION"))
    assert "tiny-clip" in row and "t2i_R@1" in row and "-1.00" in row
    assert "1 regression(s)" in out

    findings = check.compare(check.load_records(results), check.load_baseline(baseline))
    bad = [f for f in findings if f.status == "regression"]
    assert len(bad) == 1
    f = bad[0]
    assert (f.model, f.dataset, f.split, f.task, f.metric, f.kind) == (
        "tiny-clip", "synthetic", "test", "retrieval", "t2i_R@1", "accuracy")
    assert f.delta == pytest.approx(-1.0) and f.tolerance == 0.5


def test_drop_within_tolerance_passes(baseline, tmp_path, capsys):
    drops = {"t2i_R@1": RETRIEVAL["t2i_R@1"] - 0.5, "rsum": RETRIEVAL["rsum"] - 1.5}
    results = populate(tmp_path / "cur", metrics=drops)
    assert check_against(capsys, baseline, results)[0] == 0


def test_rank_increase_fails_rank_decrease_passes(baseline, tmp_path, capsys):
    worse = populate(tmp_path / "worse", metrics={"t2i_meanr": RETRIEVAL["t2i_meanr"] + 2.0})
    code, out, _ = check_against(capsys, baseline, worse)
    assert code == 1 and "t2i_meanr" in out
    better = populate(tmp_path / "better", metrics={"t2i_meanr": 1.0, "t2i_medr": 1.0})
    assert check_against(capsys, baseline, better)[0] == 0


def test_throughput_drop_on_same_machine_fails(baseline, tmp_path, capsys):
    code, out, _ = check_against(capsys, baseline, populate(tmp_path / "cur", ips=0.8))
    assert code == 1
    rows = [line for line in out.splitlines() if line.startswith("REGRESSION")]
    assert len(rows) == 2 and all("tiny-clip" in r and "-20.0%" in r for r in rows)
    assert {"ips_image_encode", "ips_text_encode"} <= set(" ".join(rows).split())


def test_throughput_drop_on_other_device_is_skipped(baseline, tmp_path, capsys):
    results = populate(tmp_path / "cur", ips=0.8, device_name="Other CPU")
    code, out, _ = check_against(capsys, baseline, results)
    assert code == 0, out
    assert "skipped 2 throughput" in out and "Other CPU" in out
    findings = check.compare(check.load_records(results), check.load_baseline(baseline))
    skipped = [f for f in findings if f.status == "skipped"]
    assert {f.metric for f in skipped} == {"ips_image_encode", "ips_text_encode"}
    assert all(f.kind == "throughput" and "device_name" in f.reason for f in skipped)


def test_stage_served_from_the_embedding_cache_is_not_a_throughput_regression(baseline, tmp_path, capsys):
    root = tmp_path / "cur"
    for model, task in RUNS:
        rec = record(model, task)
        if (model, task) == RUNS[0]:
            for stage in ("image_encode", "text_encode"):
                rec.timings[stage].cached, rec.timings[stage].items_per_s = True, None
        store.save(root, rec)
    code, out, _ = check_against(capsys, baseline, root)
    assert code == 0, out
    findings = check.compare(check.load_records(root), check.load_baseline(baseline))
    cached = [f for f in findings if "embedding cache" in f.reason]
    assert {f.metric for f in cached} == {"ips_image_encode", "ips_text_encode"}
    assert all(f.status == "skipped" and f.kind == "throughput" for f in cached)


def test_no_throughput_flag_ignores_throughput(baseline, tmp_path, capsys):
    results = populate(tmp_path / "cur", ips=0.5)
    assert check_against(capsys, baseline, results, "--no-throughput")[0] == 0
    assert check_against(capsys, baseline, results)[0] == 1


def test_missing_run_fails(baseline, tmp_path, capsys):
    results = populate(tmp_path / "cur", skip=(("big-clip", "retrieval"),))
    code, out, _ = check_against(capsys, baseline, results)
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("REGRESSION"))
    assert "big-clip" in row and "no current record" in row


def test_improvement_passes(baseline, tmp_path, capsys):
    better = {k: v + 5.0 for k, v in RETRIEVAL.items() if "medr" not in k and "meanr" not in k}
    code, out, _ = check_against(capsys, baseline, populate(tmp_path / "cur", metrics=better, ips=1.5))
    assert code == 0, out


def test_latest_record_of_a_run_is_checked(baseline, tmp_path, capsys):
    results = populate(tmp_path / "cur", metrics={"t2i_R@1": 0.0})  # an old, bad record ...
    store.save(results, record("tiny-clip", "retrieval", created_at="2025-03-01T00:00:00+00:00",
                               run_key="rerun-of-tiny-clip"))  # ... superseded by a good one
    assert check_against(capsys, baseline, results)[0] == 0


def test_tolerance_override_in_baseline(baseline, tmp_path, capsys):
    results = populate(tmp_path / "cur", metrics={"t2i_R@1": RETRIEVAL["t2i_R@1"] - 1.0}, ips=0.8)
    assert check_against(capsys, baseline, results)[0] == 1
    raw = json.loads(baseline.read_text(encoding="utf-8"))
    raw["tolerances"].update({"t2i_R@1": 1.5, "throughput": 0.25})
    baseline.write_text(json.dumps(raw), encoding="utf-8")
    code, out, _ = check_against(capsys, baseline, results)
    assert code == 0, out
    raw["tolerances"]["ips_text_encode"] = 0.1  # a per-stage override beats "throughput"
    baseline.write_text(json.dumps(raw), encoding="utf-8")
    code, out, _ = check_against(capsys, baseline, results)
    assert code == 1 and "ips_text_encode" in out and "ips_image_encode" not in out


@pytest.mark.parametrize("content", ["{not json", "[]", '{"schema_version": 99, "entries": []}',
                                     '{"schema_version": 1, "entries": [{"model": "x"}]}',
                                     '{"schema_version": 1, "tolerances": {"rsum": -1}, "entries": []}'])
def test_malformed_baseline_is_a_user_error_naming_the_file(tmp_path, capsys, content):
    bad = tmp_path / "broken-baseline.json"
    bad.write_text(content, encoding="utf-8")
    code, out, err = check_against(capsys, bad, populate(tmp_path / "cur"))
    assert code == 2
    assert "broken-baseline.json" in err and err.startswith("vlbench: error:")


def test_missing_baseline_file_is_a_user_error(tmp_path, capsys):
    code, _, err = check_against(capsys, tmp_path / "nope.json", populate(tmp_path / "cur"))
    assert code == 2 and "nope.json" in err


def test_baseline_update_default_path_then_checks_clean(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gate.yaml").write_text(SUITE, encoding="utf-8")
    results = populate(tmp_path / "results")
    store.save(results, record("other-model", "retrieval"))  # not in the suite: left out
    code, out, err = run_cli(capsys, "baseline", "update", "--suite", "gate.yaml", "--results", str(results))
    assert code == 0, err
    written = tmp_path / "benchmarks" / "baselines" / "gate.json"
    assert str(Path("benchmarks/baselines/gate.json")) in out and written.is_file()
    assert {e["model"] for e in json.loads(written.read_text())["entries"]} == {"tiny-clip", "big-clip"}
    code, out, _ = check_against(capsys, written, results)
    assert code == 0 and "0 regression(s)" in out


def test_baseline_update_with_a_suite_run_missing_is_an_error(tmp_path, capsys):
    (tmp_path / "gate.yaml").write_text(SUITE, encoding="utf-8")
    results = populate(tmp_path / "results", skip=(("tiny-clip", "zeroshot"),))
    out = tmp_path / "b.json"
    code, _, err = run_cli(capsys, "baseline", "update", "--suite", str(tmp_path / "gate.yaml"),
                           "--results", str(results), "--out", str(out))
    assert code == 2 and "tiny-clip" in err and "zeroshot" in err and "vlbench sweep --suite gate" in err
    assert not out.exists()


def test_rerank_variants_are_separate_runs(tmp_path, capsys):
    """BLIP "ITC only" and "ITC->ITM k=128" share model/dataset/task: rerank_k keeps them apart,
    so a drop in one is caught even when the other is the latest record."""
    root = tmp_path / "base"
    for k, r1 in ((0, 40.0), (128, 50.0)):
        raw = make_record("blip", task="retrieval", run_key=f"blip-k{k}")
        raw["options"].update(rerank_k=k, prefilter=None)
        raw["metrics"]["t2i_R@1"] = r1
        store.save(root, ResultRecord.from_dict(raw))
    records = check.load_records(root)
    assert sorted(r.options["rerank_k"] for r in records) == [0, 128]
    out = tmp_path / "b.json"
    check.write_baseline(records, "gate", out)
    raw = make_record("blip", task="retrieval", run_key="blip-k128-rerun", created_at="2025-02-01T00:00:00+00:00")
    raw["options"].update(rerank_k=128, prefilter=None)
    raw["metrics"]["t2i_R@1"] = 48.0  # 2 points worse than its own baseline, still above ITC-only
    store.save(root, ResultRecord.from_dict(raw))
    code, text, _ = check_against(capsys, out, root)
    assert code == 1
    rows = [line for line in text.splitlines() if line.startswith("REGRESSION")]
    assert len(rows) == 1 and "blip (rerank_k=128)" in rows[0] and "t2i_R@1" in rows[0]


def test_baseline_without_rerank_keys_still_matches(baseline, tmp_path, capsys):
    """Baselines written before rerank_k/prefilter were recorded keep working."""
    raw = json.loads(baseline.read_text(encoding="utf-8"))
    for e in raw["entries"]:
        e.pop("rerank_k", None)
        e.pop("prefilter", None)
    baseline.write_text(json.dumps(raw), encoding="utf-8")
    assert check_against(capsys, baseline, populate(tmp_path / "cur"))[0] == 0
    code, out, _ = check_against(capsys, baseline, populate(tmp_path / "bad", metrics={"rsum": 300.0}))
    assert code == 1 and "rsum" in out


def test_baseline_leaves_out_cached_stages_without_throughput():
    rec = record("m", "retrieval")
    stage = next(s for s in rec.timings if s in check.THROUGHPUT_STAGES)
    rec.timings[stage].items_per_s = None  # served from the embedding cache: no throughput to keep
    entry = check.make_baseline([rec, record("n", "retrieval")], "s")["entries"][0]
    assert stage not in entry["throughput"] and entry["throughput"]


# ---- a gate that compared nothing fails (issue 13 item 2)

def _rewrite(baseline: Path, change) -> Path:
    raw = json.loads(baseline.read_text(encoding="utf-8"))
    change(raw)
    baseline.write_text(json.dumps(raw), encoding="utf-8")  # json writes NaN as the bare token NaN
    return baseline


def _nan_metrics(raw: dict) -> None:
    for e in raw["entries"]:
        e["metrics"] = {k: float("nan") for k in e["metrics"]}


def test_baseline_of_nan_metrics_is_an_error_naming_file_and_entry(baseline, tmp_path, capsys):
    _rewrite(baseline, _nan_metrics)
    code, out, err = check_against(capsys, baseline, populate(tmp_path / "cur"))
    assert code == 2 and "0 regression(s)" not in out
    assert str(baseline) in err and "entries[0] (big-clip on synthetic/test, retrieval, fp32/cpu)" in err
    assert "must be a finite number, got nan" in err


def test_baseline_with_no_entries_fails(baseline, tmp_path, capsys):
    _rewrite(baseline, lambda raw: raw.update(entries=[]))
    code, _, err = check_against(capsys, baseline, populate(tmp_path / "cur"))
    assert code == 2 and str(baseline) in err and "'entries' is empty" in err and "compare nothing" in err


@pytest.mark.parametrize("metrics", [None, {}, "rsum"], ids=["absent", "empty", "not-an-object"])
def test_baseline_entry_without_metrics_fails_naming_it(baseline, tmp_path, capsys, metrics):
    def drop(raw):
        entry = next(e for e in raw["entries"] if e["model"] == "tiny-clip" and e["task"] == "zeroshot")
        if metrics is None:
            del entry["metrics"]
        else:
            entry["metrics"] = metrics
    _rewrite(baseline, drop)
    code, _, err = check_against(capsys, baseline, populate(tmp_path / "cur"))
    assert code == 2 and str(baseline) in err
    assert "(tiny-clip on synthetic/test, zeroshot, fp32/cpu) has no 'metrics' to compare" in err


@pytest.mark.parametrize("value", ["12.5", True, None, [1]])
def test_malformed_metric_value_names_file_entry_and_metric(baseline, tmp_path, capsys, value):
    _rewrite(baseline, lambda raw: raw["entries"][1]["metrics"].update(rsum=value))
    code, _, err = check_against(capsys, baseline, populate(tmp_path / "cur"))
    assert code == 2 and str(baseline) in err and "entries[1] (" in err and "metrics['rsum']" in err


def test_compare_fails_an_entry_whose_every_metric_was_skipped(baseline, tmp_path):
    """compare() on a baseline that bypassed load_baseline's checks: nothing compared is a failure."""
    raw = check.load_baseline(baseline)
    _nan_metrics(raw)
    findings = check.compare(check.load_records(populate(tmp_path / "cur")), raw, throughput=False)
    empty = [f for f in findings if f.kind == "empty"]
    assert len(empty) == 3 + 1 and all(f.status == "regression" for f in empty)  # each entry, and the gate
    assert sum("every metric of this baseline entry was skipped" in f.reason for f in empty) == 3
    text = check.format_findings(findings)
    assert check.NOTHING_COMPARED in text and "4 regression(s), 0 ok" in text


def test_compare_with_throughput_alone_left_is_not_a_pass(baseline, tmp_path):
    """Accuracy all skipped but throughput compared: the entry's numbers were still not checked."""
    raw = check.load_baseline(baseline)
    _nan_metrics(raw)
    findings = check.compare(check.load_records(populate(tmp_path / "cur")), raw)
    assert any(f.status == "ok" and f.kind == "throughput" for f in findings)
    assert sum(f.kind == "empty" for f in findings) == 3


def test_compare_of_an_empty_baseline_fails():
    findings = check.compare([record("tiny-clip", "retrieval")], {"entries": [], "tolerances": {}})
    assert [(f.kind, f.status, f.reason) for f in findings] == [("empty", "regression", check.NOTHING_COMPARED)]


def test_baseline_update_keeps_only_finite_metrics():
    rec = record("m", "retrieval", metrics={"t2i_medr": float("nan")})
    entry = check.make_baseline([rec], "s")["entries"][0]
    assert "t2i_medr" not in entry["metrics"] and entry["metrics"]["rsum"] == RETRIEVAL["rsum"]
    rec.metrics = {k: float("nan") for k in rec.metrics}
    with pytest.raises(check.CheckError, match="no finite metric"):
        check.make_baseline([rec], "s")
    with pytest.raises(check.CheckError, match="no records"):
        check.make_baseline([], "s")


def test_model_filter_compares_only_that_models_entries(baseline, tmp_path, capsys):
    results = populate(tmp_path / "cur", skip=(RUNS[-1],))  # one run of another model missing
    code, out, _ = check_against(capsys, baseline, results)
    assert code == 1 and "no current record" in out
    only = sorted({m for m, _ in RUNS if m != RUNS[-1][0]})
    code, out, _ = check_against(capsys, baseline, results, *[a for m in only for a in ("--model", m)])
    assert code == 0, out
    assert "REGRESSION" not in out and "big-clip" not in out


def test_model_filter_naming_no_entry_is_an_error_not_an_empty_pass(baseline, tmp_path, capsys):
    code, out, err = check_against(capsys, baseline, populate(tmp_path / "cur"), "--model", "tiny-clip-synth")
    assert code == 2 and "no baseline entries for 'tiny-clip-synth'" in err and str(baseline) in err
    assert "its models:" in err and out == ""


def test_an_entry_tolerance_overrides_the_files_and_survives_a_baseline_update(baseline, tmp_path, capsys):
    raw = json.loads(baseline.read_text())
    entry = next(e for e in raw["entries"] if e["model"] == "tiny-clip" and e["task"] == "retrieval")
    entry["tolerances"] = {"t2i_R@1": 2.0}
    baseline.write_text(json.dumps(raw))
    drop = {"t2i_R@1": RETRIEVAL_R1 - 1.5}
    code, out, _ = check_against(capsys, baseline, populate(tmp_path / "cur", metrics=drop), "--no-throughput")
    assert code == 0, out  # 1.5 points: within this entry's 2.0, not the file's 0.5
    code, out, _ = check_against(capsys, baseline, populate(tmp_path / "cur2", metrics={"t2i_R@1": RETRIEVAL_R1 - 2.5}),
                                 "--no-throughput")
    assert code == 1 and "t2i_R@1" in out
    suite = tmp_path / "gate.yaml"
    code, _, err = run_cli(capsys, "baseline", "update", "--suite", str(suite), "--results",
                           str(populate(tmp_path / "again")), "--out", str(baseline))
    assert code == 0, err
    kept = [e.get("tolerances") for e in json.loads(baseline.read_text())["entries"]]
    assert kept.count({"t2i_R@1": 2.0}) == 1


def test_a_negative_entry_tolerance_is_refused_naming_the_entry(baseline, tmp_path, capsys):
    raw = json.loads(baseline.read_text())
    raw["entries"][0]["tolerances"] = {"acc1": -1}
    baseline.write_text(json.dumps(raw))
    code, _, err = check_against(capsys, baseline, populate(tmp_path / "cur"))
    assert code == 2 and "entries[0]" in err and "tolerances['acc1']" in err
