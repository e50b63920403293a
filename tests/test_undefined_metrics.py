"""Issue 22, item 3: an undefined main metric fails the run in one line saying why; no record
ever holds NaN or Infinity (an undefined secondary metric is null with its reason)."""

from __future__ import annotations

import json

import pytest
from imagefiles import jpeg_bytes
from judgment_fixture import write_fixture

from harness.cli.main import main
from harness.results import finite, store
from harness.results.records import ResultRecord
from tests.test_caption_selection import _aro
from tests.test_human_agreement import fixture_captions


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_all_expert_judgments_equal_fails_in_one_line(tmp_path, capsys):
    caps = fixture_captions()
    write_fixture(tmp_path, caps, sorted(caps)[:4], lambda q: jpeg_bytes((10 * len(q), 40, 90)))
    expert = tmp_path / "flickr8k" / "text" / "ExpertAnnotations.txt"
    lines = [ln.split("\t")[:2] + ["2", "2", "2"] for ln in expert.read_text().splitlines()]
    expert.write_text("\n".join("\t".join(ln) for ln in lines) + "\n")
    results = tmp_path / "results"
    code, _, err = run(capsys, "run", "--model", "tiny-clip-random", "--dataset", "flickr8k-expert",
                       "--task", "human_agreement", "--data-root", str(tmp_path), "--workers", "0",
                       "--results", str(results))
    assert code == 2
    last = err.splitlines()[-1]
    assert last.startswith("vlbench: error: flickr8k-expert/test: kendall_tau_c: all ")
    assert last.endswith("human judgments are equal (2): Kendall's tau is undefined; no result is recorded")
    assert not (results.exists() and list(results.rglob("*.json")))


def test_aro_attribution_without_a_pair_of_25_items_fails_naming_why(tmp_path, capsys):
    root = _aro(tmp_path, with_order=False)
    path = root / "aro" / "visual_genome_attribution.json"
    path.write_text(json.dumps(json.loads(path.read_text())[20:]))  # 6 + 4 items: no pair reaches 25
    results = tmp_path / "results"
    code, _, err = run(capsys, "run", "--model", "tiny-clip-random", "--dataset", "aro", "--split", "vg_attribution",
                       "--task", "caption_selection", "--data-root", str(root), "--workers", "0",
                       "--results", str(results))
    assert code == 2
    assert err.splitlines()[-1] == (
        "vlbench: error: aro/vg_attribution: acc is the mean over subsets and acc_vg_attribution is undefined "
        "(no category of vg_attribution reaches 25 items (the largest, green_big, has 6): the macro accuracy "
        "is undefined); no result is recorded")
    assert not (results.exists() and list(results.rglob("*.json")))


def _record(metrics: dict) -> ResultRecord:
    return ResultRecord(model={"name": "m"}, dataset={"name": "d", "split": "test"}, task="retrieval",
                        options={}, metrics=metrics, main_metric="rsum", timings={}, memory={}, environment={},
                        created_at="2026-01-01T00:00:00+00:00", runtime_s=0.0, run_key="0" * 16)


def test_store_refuses_a_record_or_sidecar_holding_nan_or_infinity(tmp_path):
    with pytest.raises(finite.UserError, match=r"metrics\.t2i_medr is NaN or Infinity"):
        store.save(tmp_path, _record({"rsum": 1.0, "t2i_medr": float("nan")}))
    with pytest.raises(finite.UserError, match=r"score\[1\] is NaN or Infinity"):
        store.save(tmp_path, _record({"rsum": 1.0}), {"score": [0.5, float("inf")]})
    assert list(tmp_path.rglob("*")) == []  # nothing half-written
    path = store.save(tmp_path, _record({"rsum": 1.0, "t2i_medr": None}), {"score": [0.5]})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c))["metrics"]["t2i_medr"] is None


def test_settle_keeps_a_defined_main_and_nulls_the_rest():
    metrics, why = finite.settle({"acc": 40.0, "acc_x_macro": float("nan"), "n": 3}, "acc",
                                 {"acc_x_macro": "no category"}, "aro/test")
    assert metrics == {"acc": 40.0, "acc_x_macro": None, "n": 3} and why == {"acc_x_macro": "no category"}
    with pytest.raises(finite.UndefinedMetric, match=r"^aro/test: no pair; no result is recorded$"):
        finite.settle({"acc": float("inf")}, "acc", {"acc": "no pair"}, "aro/test")


def test_strict_parser_in_conftest_rejects_bare_nan(tmp_path):
    from conftest import strict_load

    bad = tmp_path / "r.json"
    bad.write_text('{"metrics": {"acc": NaN}}')
    with pytest.raises(ValueError, match="NaN is not JSON"):
        strict_load(bad)
    ok = tmp_path / "ok.json"
    ok.write_text('{"acc": null}')
    assert strict_load(ok) == {"acc": None}
