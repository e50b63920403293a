"""Bootstrap intervals and paired tests (leaderboard/stats.py): known answers, offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.results import store
from harness.results.records import ResultRecord
from leaderboard.stats import (
    accuracy_ci,
    bootstrap_ci,
    load_queries,
    paired_bootstrap_pvalue,
    recall_at_k_ci,
    sidecar_path,
    significant,
)
from tests.test_leaderboard import make_record


def bernoulli(n: int, p: float, seed: int) -> np.ndarray:
    """Exactly round(n * p) hits in a seeded random order."""
    out = np.zeros(n, dtype=bool)
    out[: round(n * p)] = True
    return np.random.default_rng(seed).permutation(out)


# --------------------------------------------------------------------------- intervals

@pytest.mark.parametrize("value", [0.0, 1.0, 42.5, 0.3])
def test_constant_vector_gives_zero_width_interval(value):
    low, high = bootstrap_ci(np.full(200, value))
    assert low == pytest.approx(value) and high == pytest.approx(value)
    assert high - low == pytest.approx(0.0, abs=1e-12)


def test_bernoulli_half_matches_normal_approximation():
    correct = bernoulli(10_000, 0.5, seed=1)
    low, high = accuracy_ci(correct, n_boot=2000, seed=0)
    half = 1.96 * np.sqrt(0.25 / 10_000) * 100  # 0.98 points
    assert (high - low) / 2 == pytest.approx(half, abs=0.2)
    assert low == pytest.approx(50 - half, abs=0.2) and high == pytest.approx(50 + half, abs=0.2)


def test_fixed_seed_reproducible_other_seed_differs():
    x = np.random.default_rng(3).normal(size=300)
    assert bootstrap_ci(x, seed=7) == bootstrap_ci(x, seed=7)
    assert bootstrap_ci(x, seed=7) != bootstrap_ci(x, seed=8)


def test_blocks_bound_memory_without_changing_shape(monkeypatch):
    import leaderboard.stats as stats
    monkeypatch.setattr(stats, "BLOCK_ELEMENTS", 1000)  # 1000 // 300 = 3 resamples per block
    x = np.random.default_rng(3).normal(size=300)
    low, high = bootstrap_ci(x, n_boot=500)
    assert low < x.mean() < high


def test_custom_vectorised_statistic_and_bad_statistic():
    x = np.arange(101, dtype=float)
    low, high = bootstrap_ci(x, lambda s: np.median(s, axis=-1), n_boot=300)
    assert low <= 50 <= high
    with pytest.raises(ValueError, match="statistic must reduce"):
        bootstrap_ci(x, lambda s: s)  # no reduction


def test_recall_ci_contains_point_estimate():
    ranks = np.random.default_rng(5).integers(1, 30, size=1000)
    for k in (1, 5, 10):
        point = 100 * np.mean(ranks <= k)
        low, high = recall_at_k_ci(ranks, k)
        assert low <= point <= high
        assert 0 <= low <= high <= 100


def test_accuracy_ci_in_points_and_contains_point():
    correct = bernoulli(400, 0.7, seed=2)
    low, high = accuracy_ci(correct)
    assert low < 70 < high and high - low < 15


@pytest.mark.parametrize("bad", [np.array([]), np.zeros((3, 3))])
def test_bad_inputs_rejected(bad):
    with pytest.raises(ValueError):
        bootstrap_ci(bad)


def test_bad_parameters_rejected():
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(np.ones(5), alpha=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(np.ones(5), n_boot=0)
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k_ci(np.ones(5), 0)


# --------------------------------------------------------------------------- paired test

def test_identical_outcomes_give_p_one():
    a = bernoulli(300, 0.6, seed=4)
    assert paired_bootstrap_pvalue(a, a.copy()) == 1.0
    assert not significant(a, a.copy())


def test_clearly_better_model_is_significant():
    a = np.ones(500, dtype=bool)
    b = bernoulli(500, 0.5, seed=6)
    p = paired_bootstrap_pvalue(a, b)
    assert p < 0.01
    assert p == pytest.approx(2 / 1001)  # floor reached: no resample on the other side
    assert paired_bootstrap_pvalue(b, a) == p  # symmetric
    assert significant(a, b) and significant(b, a)


def test_tiny_difference_on_small_n_not_significant():
    b = bernoulli(30, 0.5, seed=8)
    a = b.copy()
    a[np.flatnonzero(~a)[0]] = True  # one more hit out of 30
    p = paired_bootstrap_pvalue(a, b)
    assert 0.05 < p <= 1.0
    assert not significant(a, b)


def test_paired_pvalue_reproducible():
    rng = np.random.default_rng(9)
    a, b = rng.random(200) < 0.55, rng.random(200) < 0.5
    assert paired_bootstrap_pvalue(a, b, seed=3) == paired_bootstrap_pvalue(a, b, seed=3)


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="same queries"):
        paired_bootstrap_pvalue(np.ones(10), np.ones(11))
    with pytest.raises(ValueError, match="same queries"):
        significant(np.ones(10), np.ones(9))


# --------------------------------------------------------------------------- sidecar

def _saved(tmp_path: Path, task: str, per_query: dict | None) -> Path:
    record = ResultRecord.from_dict(make_record(task=task))
    return store.save(tmp_path / "results", record, per_query)


def test_load_queries_round_trips_retrieval(tmp_path):
    per_query = {"t2i_rank": [1, 3, 12, 1, 2], "i2t_rank": [1, 1, 4]}
    path = _saved(tmp_path, "retrieval", per_query)
    assert sidecar_path(path).is_file()
    got = load_queries(path)
    assert set(got) == {"t2i_rank", "i2t_rank"}
    np.testing.assert_array_equal(got["t2i_rank"], per_query["t2i_rank"])
    np.testing.assert_array_equal(got["i2t_rank"], per_query["i2t_rank"])
    assert load_queries(sidecar_path(path)).keys() == got.keys()  # the sidecar path works too
    low, high = recall_at_k_ci(got["t2i_rank"], 1)
    assert low <= 40.0 <= high


def test_load_queries_round_trips_zeroshot(tmp_path):
    per_query = {"correct": [True, False, True], "pred": [0, 2, 1]}
    got = load_queries(_saved(tmp_path, "zeroshot", per_query))
    assert got["correct"].dtype == bool and got["correct"].tolist() == [True, False, True]
    assert got["pred"].tolist() == [0, 2, 1]


def test_load_queries_missing_sidecar_names_file(tmp_path):
    path = _saved(tmp_path, "retrieval", None)
    with pytest.raises(FileNotFoundError, match=str(sidecar_path(path).name)):
        load_queries(path)


def test_load_queries_stale_run_key(tmp_path):
    path = _saved(tmp_path, "retrieval", {"t2i_rank": [1], "i2t_rank": [1]})
    side = sidecar_path(path)
    side.write_text(json.dumps({"run_key": "someone-else", "t2i_rank": [1]}), encoding="utf-8")
    with pytest.raises(ValueError, match="does not match") as info:
        load_queries(path)
    assert side.name in str(info.value)


def test_stats_does_not_import_torch():
    code = "import sys, leaderboard.stats; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)
