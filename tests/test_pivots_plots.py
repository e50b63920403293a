"""Frame labels and entries for rerank variants, the pivot helpers, and the plot functions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from leaderboard import LeaderboardError, dataset_metrics, load, models_by_dataset
from leaderboard.frame import display_label
from leaderboard.plots import (
    latency_memory_plot,
    names,
    pareto_front,
    recall_curve,
    recall_curves_plot,
    tradeoff_plot,
    trend_plot,
)
from leaderboard.uncertainty import QueryCache
from tests.lb_fixtures import HOSTILE, build_results

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("pivots") / "results"
    build_results(root)
    return root


def test_rerank_variants_are_separate_labelled_rows(store):
    df = load(store)
    blip = df[df["model"] == "blip"].sort_values("rerank_k")
    assert blip["label"].tolist() == ["blip (ITC only)", "blip (ITC\u2192ITM k=128)"]
    assert blip["rerank_k"].tolist() == [0, 128] and str(blip["rerank_k"].dtype) == "Int64"
    assert df.loc[df["model"] == "big-clip", "label"].tolist() == ["big-clip", "big-clip"]  # 2 datasets
    tiny = df[(df["model"] == "tiny-clip-synth") & (df["task"] == "retrieval")]
    assert len(tiny) == 1 and tiny["created_at"].iloc[0] == pd.Timestamp("2025-03-11T09:00Z")  # latest
    hist = load(store, history=True)
    runs = hist[(hist["model"] == "tiny-clip-synth") & (hist["task"] == "retrieval")]
    assert len(runs) == 3 and runs["created_at"].is_monotonic_increasing


def test_eval_throughput_and_p99_columns(store):
    row = load(store).set_index("label").loc["blip (ITC\u2192ITM k=128)"]
    # 200 images: image 25 s + text 8.33 s + rerank 200*128/2000 = 12.8 s
    assert row["eval_s"] == pytest.approx(25 + 25 / 3 + 12.8)
    assert row["ips_eval"] == pytest.approx(200 / (25 + 25 / 3 + 12.8))
    assert row["latency_p99_ms"] == pytest.approx(5000.0) and row["ips_rerank"] == 2000.0


@pytest.mark.parametrize("args, label", [
    (("clip", "dual", None, None), "clip"),
    (("blip", "both", 0, None), "blip (ITC only)"),
    (("blip", "both", 128, "blip"), "blip (ITC\u2192ITM k=128)"),
    (("vilt", "cross", 64, "clip"), "vilt (top-64 of clip)"),
    (("vilt", "cross", 0, "clip"), "vilt (clip only)"),
    (("vilt", "cross", 1000, None), "vilt (all pairs)"),
])
def test_display_label(args, label):
    assert display_label(*args) == label


def test_all_pairs_record_gets_its_own_label(tmp_path):
    """The runner records an all-pairs cross-encoder run as rerank_k=None, all_pairs=True."""
    from harness.results import store as results
    from harness.results.records import ResultRecord
    from tests.test_leaderboard import make_record

    raw = make_record("vilt", run_key="vilt-all")
    raw["model"]["kind"] = "cross"
    raw["options"].update(rerank_k=None, prefilter=None, all_pairs=True, pair_budget=1_000_000)
    results.save(tmp_path, ResultRecord.from_dict(raw))
    assert load(tmp_path)["label"].tolist() == ["vilt (all pairs)"]


def test_models_by_dataset(store):
    df = load(store)
    table = models_by_dataset(df, task="retrieval")
    assert list(table.columns) == [("flickr8k", "dev"), ("synthetic", "test")]
    assert table.index.names == ["label", "precision", "device"]
    big = df[(df["model"] == "big-clip") & (df["dataset"] == "flickr8k")]["rsum"].iloc[0]
    assert table.loc[("big-clip", "fp32", "cpu"), ("flickr8k", "dev")] == big
    assert math.isnan(table.loc[("tiny-clip-synth", "fp32", "cpu"), ("flickr8k", "dev")])
    assert len(table) == 6 and table.dtypes.eq("float64").all()
    both = models_by_dataset(df)
    assert ("zeroshot", "synthetic", "test") in both.columns
    hist = load(store, history=True)
    with pytest.raises(LeaderboardError, match="tiny-clip-synth"):
        models_by_dataset(hist, task="retrieval")  # 3 runs for one cell: refused, not averaged


def test_dataset_metrics(store):
    df = load(store)
    view = dataset_metrics(df, "synthetic", task="retrieval")
    assert view.index.get_level_values("label").tolist() == [
        "tiny-clip-synth", "blip (ITC\u2192ITM k=128)", "big-clip", "blip (ITC only)", HOSTILE]
    for col in ["t2i_R@1", "i2t_R@10", "rsum", "t2i_medr", "i2t_meanr", "ips_image_encode", "ips_rerank"]:
        assert col in view.columns, col
    assert "acc1" not in view.columns  # only metrics this dataset/task reports
    with pytest.raises(LeaderboardError, match="coco.*flickr8k, synthetic"):
        dataset_metrics(df, "coco")


def test_pareto_front_known_cases():
    assert pareto_front([1, 2, 3], [3, 2, 1]) == [True, True, True]
    assert pareto_front([1, 2, 3], [1, 2, 3]) == [False, False, True]
    assert pareto_front([2, 2], [5, 5]) == [True, True]                 # equal points both stay
    assert pareto_front([2, 2], [5, 4]) == [True, False]               # same speed, worse
    assert pareto_front([1, float("nan"), 3], [9, 99, 1]) == [True, False, True]


def test_recall_curve():
    ranks = np.array([1, 1, 2, 5, 10, 11, 50, 3, 1, 7])
    curve = recall_curve(ranks)
    assert curve.tolist() == [30.0, 40.0, 50.0, 50.0, 60.0, 60.0, 70.0, 70.0, 70.0, 80.0]


def test_plots_are_pngs_or_none(store):
    df = load(store)
    syn = df[(df["dataset"] == "synthetic") & (df["task"] == "retrieval")]
    for png in (tradeoff_plot(syn), recall_curves_plot(syn, QueryCache()), latency_memory_plot(syn),
                trend_plot(load(store, history=True).loc[lambda d: (d["dataset"] == "synthetic")
                                                         & (d["task"] == "retrieval")])):
        assert png is not None and png[:8] == PNG and len(png) > 5000
    assert trend_plot(syn) is None                    # latest only: no entry with 2 runs
    assert recall_curves_plot(syn.assign(path="record #0"), QueryCache()) is None
    assert tradeoff_plot(syn.assign(ips_eval=np.nan)) is None


def test_names_disambiguate_only_on_collision():
    rows = pd.DataFrame({"label": ["a", "a", "b"], "precision": ["fp32", "fp16", "fp32"],
                         "device": ["cpu", "cuda", "cpu"]})
    assert names(rows) == ["a [fp32 cpu]", "a [fp16 cuda]", "b"]
