"""Intervals for macro-F1, balanced accuracy and the hard negatives (hn_*): known answers,
a naive reference loop, old sidecars, lead tests, and a real run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

import leaderboard.stats as S
from harness.results import store
from harness.results.records import ResultRecord
from leaderboard import UncertaintyOptions, annotate, load
from tests.test_confusion import naive_macro_f1_and_balanced
from tests.test_leaderboard import make_record

FAST = UncertaintyOptions(n_boot=400, seed=0)
LABELS6, PREDS6 = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]



# ------------------------------------------------------------------ classification

@pytest.mark.parametrize("index, f1, balanced", [
    # labels 1 1 1 2 2 0 / preds 1 1 1 2 2 1: class 0 true once, never predicted -> F1 0, recall 0
    ([2, 3, 3, 4, 4, 1], 100 * (0 + 6 / 7 + 1) / 3, 100 * (0 + 1 + 1) / 3),
    # labels 1 1 2 2 2 1 / preds 1 1 2 0 2 1: class 0 only predicted -> in F1 (0), not in recall
    ([2, 3, 4, 5, 4, 2], 100 * (0 + 1 + 0.8) / 3, 100 * (1 + 2 / 3) / 2),
    # labels and preds 1 1 2 2 1 1: class 0 absent from both -> averaged over classes 1 and 2 only
    ([2, 3, 4, 4, 2, 3], 100.0, 100.0),
])
def test_known_resamples_of_six_samples(index, f1, balanced):
    rows = S.classification_rows(LABELS6, PREDS6)
    got = S.classification_statistic(rows[np.array(index)][None])
    assert got[0].tolist() == pytest.approx([f1, balanced])


def test_interval_is_the_quantiles_of_the_drawn_resamples():
    """Same draws as every other interval: one default_rng(seed), (n_boot, n) indices; the
    statistic of each, by textbook loops, then the 2.5 / 97.5 percentiles."""
    rng = np.random.default_rng(21)
    labels = rng.integers(0, 5, 150)
    preds = np.where(rng.random(150) < 0.55, labels, rng.integers(0, 6, 150))  # class 5 predicted only
    idx = np.random.default_rng(4).integers(0, 150, size=(300, 150))
    naive = np.array([naive_macro_f1_and_balanced(labels[i].tolist(), preds[i].tolist()) for i in idx])
    want = np.quantile(naive, [0.025, 0.975], axis=0)
    got = S.classification_cis(labels, preds, n_boot=300, seed=4)
    assert got["macro_f1"] == pytest.approx(tuple(want[:, 0]), abs=1e-9)
    assert got["balanced_acc"] == pytest.approx(tuple(want[:, 1]), abs=1e-9)
    point_f1, point_bal = naive_macro_f1_and_balanced(labels.tolist(), preds.tolist())
    assert got["macro_f1"][0] < point_f1 < got["macro_f1"][1]
    assert got["balanced_acc"][0] < point_bal < got["balanced_acc"][1]
    # bounded memory: a block of a few confusion matrices at a time gives the same numbers
    small = S.BLOCK_ELEMENTS
    try:
        S.BLOCK_ELEMENTS = 2 * 6 * 6
        assert S.classification_cis(labels, preds, n_boot=300, seed=4) == got
    finally:
        S.BLOCK_ELEMENTS = small


def test_identical_samples_collapse_the_interval():
    assert S.classification_cis([3] * 40, [3] * 40) == {"macro_f1": (100.0, 100.0), "balanced_acc": (100.0, 100.0)}
    # always the same mistake: two classes involved, both F1 0; the true one's recall 0
    assert S.classification_cis([1] * 40, [0] * 40) == {"macro_f1": (0.0, 0.0), "balanced_acc": (0.0, 0.0)}


def test_bad_classification_outcomes_are_named():
    with pytest.raises(ValueError, match="one entry per sample: 3 vs 2"):
        S.classification_rows([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="labels: expected non-negative integer"):
        S.classification_rows([0.5, 1.0], [0, 1])


# ------------------------------------------------------------------ hard negatives

def test_pooled_rate_interval_against_a_naive_loop():
    rng = np.random.default_rng(8)
    checks = rng.choice([20, 40, 80], size=90)
    wins = rng.binomial(checks, 0.8)
    groups = np.stack([wins, checks], 1)
    idx = np.random.default_rng(2).integers(0, 90, size=(500, 90))
    naive = [100 * sum(wins[i] for i in row) / sum(checks[i] for i in row) for row in idx]
    lo, hi = S.pooled_rate_ci(groups, n_boot=500, seed=2)
    assert (lo, hi) == pytest.approx(tuple(np.quantile(naive, [0.025, 0.975])), abs=1e-9)
    assert lo < 100 * wins.sum() / checks.sum() < hi


def test_pooled_rate_collapses_when_every_group_has_the_same_rate():
    assert S.pooled_rate_ci([[15, 20], [30, 40], [60, 80]] * 10) == (75.0, 75.0)


@pytest.mark.parametrize("bad, match", [([[3, 2]], "wins <= checks"), ([[1, 0]], "checks > 0"),
                                        ([1, 2, 3], "wins, checks"), ([[0.5, 1.0]], "integer")])
def test_bad_groups_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        S.group_rows(np.asarray(bad), "hn_relation")


# ------------------------------------------------------------------ paired tests

def test_paired_units_equals_paired_bootstrap_for_a_mean():
    rng = np.random.default_rng(4)
    a, b = (rng.random(300) < 0.6) * 100.0, (rng.random(300) < 0.5) * 100.0
    mean = lambda s: s.mean(axis=-1)  # noqa: E731
    assert S.paired_units_pvalue(a, b, mean, seed=2) == S.paired_bootstrap_pvalue(a, b, seed=2)


def test_paired_macro_f1_pvalue():
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 4, 400)
    good = np.where(rng.random(400) < 0.9, labels, (labels + 1) % 4)
    poor = np.where(rng.random(400) < 0.5, labels, (labels + 1) % 4)
    f1 = lambda s: S.classification_statistic(s)[:, 0]  # noqa: E731
    rows = lambda p: S.classification_rows(labels, p)  # noqa: E731
    assert S.paired_units_pvalue(rows(good), rows(good), f1, n_boot=200) == 1.0
    assert S.paired_units_pvalue(rows(good), rows(poor), f1, n_boot=200) == pytest.approx(2 / 201)
    with pytest.raises(ValueError, match="same units"):
        S.paired_units_pvalue(rows(good), rows(good)[:10], f1)


# ------------------------------------------------------------------ annotate

def _save(root, model, per_query, metrics, task="zeroshot", main=None):
    raw = make_record(model, task=task, metrics=metrics)
    if main:
        raw["main_metric"] = main
    store.save(root, ResultRecord.from_dict(raw), per_query)


def _zeroshot(labels, preds):
    labels, preds = np.asarray(labels), np.asarray(preds)
    f1, bal = naive_macro_f1_and_balanced(labels.tolist(), preds.tolist())
    metrics = {"acc1": 100 * float(np.mean(labels == preds)), "acc5": 100.0, "macro_f1": f1, "balanced_acc": bal}
    per_query = {"correct": (labels == preds).tolist(), "pred": preds.tolist(), "label": labels.tolist()}
    return per_query, metrics


def test_annotate_new_and_old_zeroshot_sidecars(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 240)
    preds = np.where(rng.random(240) < 0.7, labels, rng.integers(0, 6, 240))
    per_query, metrics = _zeroshot(labels, preds)
    _save(tmp_path, "new", per_query, metrics)
    old = {k: v for k, v in per_query.items() if k != "label"}    # a sidecar from before labels were kept
    _save(tmp_path, "old", old, metrics)
    out = annotate(load(tmp_path), FAST).set_index("model")
    cis = S.classification_cis(labels, preds, n_boot=400, seed=0)
    for metric in ("macro_f1", "balanced_acc"):
        lo, hi = out.loc["new", f"{metric}_lo"], out.loc["new", f"{metric}_hi"]
        assert (lo, hi) == cis[metric] and lo < metrics[metric] < hi
        assert np.isnan(out.loc["old", f"{metric}_lo"]) and np.isnan(out.loc["old", f"{metric}_hi"])
    assert out.loc["old", "acc1_lo"] == out.loc["new", "acc1_lo"]   # what old sidecars gave, still there
    assert out["queries_note"].isna().all()


def _retrieval(hn_groups):
    per_query = {"t2i_rank": [1, 2, 1, 7] * 25, "i2t_rank": [1, 1, 3, 1] * 5, **hn_groups}
    metrics = {"t2i_R@1": 50.0, "t2i_R@5": 75.0, "t2i_R@10": 100.0, "i2t_R@1": 75.0, "i2t_R@5": 100.0,
               "i2t_R@10": 100.0, "rsum": 500.0}
    metrics.update({k: 100.0 * sum(w for w, _ in g) / sum(c for _, c in g) for k, g in hn_groups.items()})
    return per_query, metrics


def test_annotate_hard_negatives_old_sidecar_and_bad_groups(tmp_path):
    rng = np.random.default_rng(3)
    groups = {"hn_binding": [[int(w), 40] for w in rng.binomial(40, 0.7, 60)],
              "hn_relation": [[int(w), 20] for w in rng.binomial(20, 0.9, 50)]}
    per_query, metrics = _retrieval(groups)
    _save(tmp_path / "r", "new", per_query, metrics, task="retrieval")
    _save(tmp_path / "r", "old", {k: per_query[k] for k in ("t2i_rank", "i2t_rank")}, metrics, task="retrieval")
    out = annotate(load(tmp_path / "r"), FAST).set_index("model")
    for key, rows in groups.items():
        lo, hi = out.loc["new", f"{key}_lo"], out.loc["new", f"{key}_hi"]
        assert (lo, hi) == S.pooled_rate_ci(rows, n_boot=400, seed=0) and lo < metrics[key] < hi
        assert np.isnan(out.loc["old", f"{key}_lo"])
    assert out.loc["old", "rsum_lo"] == out.loc["new", "rsum_lo"] and out["queries_note"].isna().all()

    bad = {**per_query, "hn_binding": [[50, 40]]}                     # more wins than checks
    _save(tmp_path / "b", "bad", bad, metrics, task="retrieval")
    row = annotate(load(tmp_path / "b"), FAST).iloc[0]
    assert "hn_binding" in row["queries_note"] and "wins <= checks" in row["queries_note"]
    assert np.isnan(row["hn_binding_lo"])


def test_lead_test_on_macro_f1_when_it_is_the_main_metric(tmp_path):
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 5, 300)
    ranked = {}
    for name, quality in (("good", 0.9), ("poor", 0.6)):
        preds = np.where(rng.random(300) < quality, labels, (labels + 2) % 5)
        per_query, metrics = _zeroshot(labels, preds)
        _save(tmp_path, name, per_query, metrics, main="macro_f1")
        ranked[name] = S.classification_rows(labels, preds)
    out = annotate(load(tmp_path), FAST).set_index("model")
    f1 = lambda s: S.classification_statistic(s)[:, 0]  # noqa: E731
    assert out.loc["good", "lead_over"] == "poor" and bool(out.loc["good", "lead_significant"])
    assert out.loc["good", "lead_p"] == S.paired_units_pvalue(ranked["good"], ranked["poor"], f1, n_boot=400)
    assert np.isnan(out.loc["poor", "lead_p"])


def test_lead_test_skips_hard_negatives_on_other_groups(tmp_path):
    per_a, m_a = _retrieval({"hn_binding": [[30, 40]] * 20 + [[40, 40]] * 20})
    per_b, m_b = _retrieval({"hn_binding": [[10, 20]] * 40})
    _save(tmp_path, "a", per_a, m_a, task="retrieval", main="hn_binding")
    _save(tmp_path, "b", per_b, m_b, task="retrieval", main="hn_binding")
    out = annotate(load(tmp_path), FAST).set_index("model")
    assert np.isnan(out.loc["a", "lead_p"])                            # same count, other checks: not paired
    per_c, m_c = _retrieval({"hn_binding": [[24, 40]] * 40})            # 60%: ranks between a and b
    _save(tmp_path, "c", per_c, m_c, task="retrieval", main="hn_binding")
    out = annotate(load(tmp_path), FAST).set_index("model")
    assert out.loc["a", "lead_over"] == "c" and out.loc["a", "lead_p"] == pytest.approx(2 / 401)
    assert np.isnan(out.loc["c", "lead_p"])                            # over b: other groups


# ------------------------------------------------------------------ a real run, end to end

def test_synthetic_run_writes_labels_and_groups_and_the_page_shows_intervals(tmp_path, capsys):
    from harness.cli.main import main
    from harness.datasets import DatasetRequest, TaskKind, synthetic
    from harness.tasks.hard_negatives import accuracy_from_groups

    results = tmp_path / "results"
    # the two tasks this test reads (every task synthetic offers would add the probes' fits)
    code = main(["run", "--model", "tiny-clip-synth", "--dataset", "synthetic", "--limit", "160",
                 "--task", "zeroshot", "--task", "retrieval",
                 "--batch-size", "32", "--workers", "0", "--results", str(results)])
    assert code == 0, capsys.readouterr().err
    sidecars = {p.parent.name: json.loads(p.read_text()) for p in results.rglob("*.queries.json")}
    records = {p.parent.name: json.loads(p.read_text()) for p in results.rglob("*.json")
               if not p.name.endswith(".queries.json")}
    zs, ret = sidecars["zeroshot"], sidecars["retrieval"]
    data = synthetic.load(DatasetRequest("test", TaskKind.ZEROSHOT, limit=160, seed=0))
    assert zs["label"] == data.labels and len(zs["pred"]) == 160
    assert zs["correct"] == [p == y for p, y in zip(zs["pred"], zs["label"])]
    f1, bal = naive_macro_f1_and_balanced(zs["label"], zs["pred"])
    assert records["zeroshot"]["metrics"]["macro_f1"] == pytest.approx(f1)
    assert records["zeroshot"]["metrics"]["balanced_acc"] == pytest.approx(bal)
    hn_keys = {k for k in ret if k.startswith("hn_")}
    assert {"hn_binding", "hn_relation"} <= hn_keys
    assert accuracy_from_groups({k: ret[k] for k in hn_keys}) == {
        k: v for k, v in records["retrieval"]["metrics"].items() if k.startswith("hn_")}

    df = annotate(load(results)).set_index("task")  # the page's options: its numbers below
    for task, metrics in (("zeroshot", ("macro_f1", "balanced_acc")), ("retrieval", sorted(hn_keys))):
        for m in metrics:
            lo, hi, value = df.loc[task, f"{m}_lo"], df.loc[task, f"{m}_hi"], df.loc[task, m]
            assert lo <= value <= hi and hi - lo < 60, (task, m, lo, value, hi)

    code = main(["leaderboard", "--results", str(results), "--out", str(tmp_path / "lb.html")])
    page = (tmp_path / "lb.html").read_text()
    for task, m in (("zeroshot", "macro_f1"), ("zeroshot", "balanced_acc"), ("retrieval", "hn_binding")):
        lo, hi = df.loc[task, f"{m}_lo"], df.loc[task, f"{m}_hi"]
        assert f'<span class="ci">{lo:.2f}\u2013{hi:.2f}</span>' in page, m
