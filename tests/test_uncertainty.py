"""Intervals and lead tests from the sidecars: known answers, reproducibility, missing data."""

from __future__ import annotations

import numpy as np
import pytest

from harness.results import store
from harness.results.records import ResultRecord
from leaderboard import UncertaintyOptions, annotate, load
from leaderboard.stats import (
    paired_bootstrap_pvalue,
    paired_sum_pvalue,
    rsum_parts,
    sum_of_means_ci,
)
from tests.test_leaderboard import make_record

FAST = UncertaintyOptions(n_boot=400, seed=0)


def test_sum_of_means_matches_normal_approximation():
    """Known answer: two independent Bernoulli(0.5) sets of 4000 and 1000 queries in points;
    the sum's sd is sqrt(p(1-p)/n1 + p(1-p)/n2) * 100 = 1.768 points, so the half-width is 3.47."""
    rng = np.random.default_rng(0)
    a = rng.permutation(np.repeat([0.0, 100.0], 2000))
    b = rng.permutation(np.repeat([0.0, 100.0], 500))
    lo, hi = sum_of_means_ci([a, b], n_boot=4000, seed=1)
    half = 1.96 * 100 * np.sqrt(0.25 / 4000 + 0.25 / 1000)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.06)
    assert (lo + hi) / 2 == pytest.approx(100.0, abs=0.3)


def test_sum_of_means_reproducible_and_single_part_equals_bootstrap_ci():
    from leaderboard.stats import bootstrap_ci

    x = np.random.default_rng(2).normal(size=300)
    assert sum_of_means_ci([x, x[:50]], seed=5) == sum_of_means_ci([x, x[:50]], seed=5)
    assert sum_of_means_ci([x, x[:50]], seed=5) != sum_of_means_ci([x, x[:50]], seed=6)
    assert sum_of_means_ci([x], seed=3) == bootstrap_ci(x, seed=3)


def test_paired_sum_single_part_equals_paired_bootstrap():
    rng = np.random.default_rng(4)
    a, b = (rng.random(300) < 0.6) * 100.0, (rng.random(300) < 0.5) * 100.0
    assert paired_sum_pvalue([a], [b], seed=2) == paired_bootstrap_pvalue(a, b, seed=2)
    assert paired_sum_pvalue([a, a[:40]], [a, a[:40]]) == 1.0
    with pytest.raises(ValueError, match="same queries"):
        paired_sum_pvalue([a], [b[:10]])


def test_rsum_parts_sum_to_rsum():
    rng = np.random.default_rng(7)
    t2i, i2t = rng.integers(1, 20, 500), rng.integers(1, 20, 100)
    rsum = sum(100 * np.mean(r <= k) for r in (t2i, i2t) for k in (1, 5, 10))
    assert sum(p.mean() for p in rsum_parts(t2i, i2t)) == pytest.approx(rsum)


def _save(root, model, per_query, metrics, fingerprint="fp", task="retrieval"):
    raw = make_record(model, task=task, metrics=metrics)
    raw["dataset"]["fingerprint"] = fingerprint
    store.save(root, ResultRecord.from_dict(raw), per_query)


def _retrieval(t2i, i2t):
    t2i, i2t = np.asarray(t2i), np.asarray(i2t)
    m = {f"{d}_R@{k}": 100 * float(np.mean(r <= k)) for d, r in (("t2i", t2i), ("i2t", i2t)) for k in (1, 5, 10)}
    m["rsum"] = sum(m.values())
    return {"t2i_rank": t2i.tolist(), "i2t_rank": i2t.tolist()}, m


def test_annotate_constant_outcomes_give_exact_intervals(tmp_path):
    """Known answer: every query found at rank 3 -> R@1 = 0 and R@5 = R@10 = 100 exactly."""
    per_query, metrics = _retrieval([3] * 50, [3] * 10)
    _save(tmp_path, "m", per_query, metrics)
    row = annotate(load(tmp_path), FAST).iloc[0]
    assert (row["t2i_R@1_lo"], row["t2i_R@1_hi"]) == (0.0, 0.0)
    assert (row["t2i_R@5_lo"], row["i2t_R@10_hi"]) == (100.0, 100.0)
    assert (row["rsum_lo"], row["rsum_hi"]) == (400.0, 400.0)
    assert pd_isna(row["lead_p"]) and pd_isna(row["queries_note"])


def pd_isna(x) -> bool:
    import pandas as pd

    return bool(pd.isna(x))


def test_annotate_lead_tests_on_same_data_only(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.integers(1, 15, 600)
    better = np.where(rng.random(600) < 0.5, 1, base)          # clearly better
    tiny = base.copy()
    tiny[np.flatnonzero(tiny > 1)[:1]] = 1                      # one query better: not significant
    for name, t2i in (("best", better), ("second", tiny), ("third", base)):
        per_query, metrics = _retrieval(t2i, t2i[:100])
        _save(tmp_path / "r", name, per_query, metrics)
    per_query, metrics = _retrieval(base[:300], base[:60])      # other data: never paired
    _save(tmp_path / "r", "elsewhere", per_query, {**metrics, "rsum": metrics["rsum"] - 1000}, fingerprint="x")
    out = annotate(load(tmp_path / "r"), FAST).set_index("model")
    assert out.loc["best", "lead_over"] == "second" and bool(out.loc["best", "lead_significant"])
    assert out.loc["best", "lead_p"] == pytest.approx(2 / 401)
    assert out.loc["second", "lead_over"] == "third" and not bool(out.loc["second", "lead_significant"])
    assert out.loc["second", "lead_p"] == pytest.approx(paired_sum_pvalue(
        rsum_parts(tiny, tiny[:100]), rsum_parts(base, base[:100]), n_boot=400, seed=0))
    assert pd_isna(out.loc["third", "lead_p"])                  # next is on other data
    assert pd_isna(out.loc["elsewhere", "lead_p"])              # last row


def test_annotate_zeroshot_and_missing_or_stale_sidecar(tmp_path):
    correct = np.arange(200) % 4 != 0                          # exactly 75% correct
    zs = {"acc1": 75.0, "acc5": 90.0, "macro_f1": 70.0, "balanced_acc": 75.0}
    _save(tmp_path, "zs", {"correct": correct.tolist(), "pred": [0] * 200}, zs, task="zeroshot")
    _save(tmp_path, "nosidecar", None, zs, task="zeroshot")
    out = annotate(load(tmp_path), FAST).set_index("model")
    lo, hi = out.loc["zs", "acc1_lo"], out.loc["zs", "acc1_hi"]
    half = 1.96 * 100 * np.sqrt(0.75 * 0.25 / 200)             # 6.0 points
    assert lo < 75 < hi and (hi - lo) / 2 == pytest.approx(half, rel=0.2)
    assert pd_isna(out.loc["nosidecar", "acc1_lo"]) and out.loc["nosidecar", "queries_note"] == "no per-query file"
    assert pd_isna(out.loc["zs", "lead_p"]) and pd_isna(out.loc["nosidecar", "lead_p"])
    # a sidecar from another run is refused, with the reason kept
    side = next(tmp_path.rglob("*zs__*.queries.json"))
    side.write_text('{"run_key": "other", "correct": [true]}', encoding="utf-8")
    note = annotate(load(tmp_path), FAST).set_index("model").loc["zs", "queries_note"]
    assert "does not match" in note


def test_annotate_is_reproducible_for_a_fixed_seed(tmp_path):
    rng = np.random.default_rng(3)
    per_query, metrics = _retrieval(rng.integers(1, 12, 400), rng.integers(1, 12, 80))
    _save(tmp_path, "m", per_query, metrics)
    df = load(tmp_path)
    a, b = annotate(df, FAST), annotate(df, FAST)
    assert a.equals(b)
    c = annotate(df, UncertaintyOptions(n_boot=400, seed=1))
    assert c["t2i_R@1_lo"].iloc[0] != a["t2i_R@1_lo"].iloc[0] or c["rsum_lo"].iloc[0] != a["rsum_lo"].iloc[0]


def test_recall_cis_equal_separate_recall_at_k_ci():
    from leaderboard.stats import recall_at_k_ci, recall_cis

    ranks = np.random.default_rng(11).geometric(0.3, size=700)
    together = recall_cis(ranks, (1, 5, 10), n_boot=300, seed=4)
    assert together == {k: recall_at_k_ci(ranks, k, n_boot=300, seed=4) for k in (1, 5, 10)}
    with pytest.raises(ValueError, match="k must be"):
        recall_cis(ranks, (0, 1))
