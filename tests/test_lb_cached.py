"""Throughput served by the embedding cache is never shown as the model's (issue 13 item 4):
it is taken from the latest run of the same setup that encoded, or reads "cached"."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from harness.results import store
from harness.results.records import StageTiming
from leaderboard import build, format_text, load, main_table
from leaderboard.plots import tradeoff_plot
from tests.lb_fixtures import RETRIEVAL_SPECS, T0, ZEROSHOT_SPECS, make, retrieval_metrics, retrieval_outcomes
from tests.test_page import PageParser, section

TINY = RETRIEVAL_SPECS[0]  # tiny-clip-synth, image encode 140 items/s
N = 200


def cache_served(rec, stages=("image_encode", "text_encode")):
    """What a re-run on a warm embedding cache records: no batches, no items/s, a few ms."""
    for name in stages:
        t = rec.timings[name]
        rec.timings[name] = StageTiming(seconds=0.004, items=t.items, items_per_s=None, cached=True,
                                        cached_items=t.items, batch_size=32, batch_size_final=32)
    rec.timings["scoring"] = StageTiming(seconds=0.01, items=N, items_per_s=N / 0.01, batches=1,
                                         latency_ms={"p50": 10.0, "p90": 10.0, "p99": 10.0})
    return rec


def save(root: Path, spec=TINY, minutes: int = 0, cached: bool = False, batch_size: int = 32, task="retrieval"):
    per_query = retrieval_outcomes(spec, seed=10)
    rec = make(spec, "synthetic", "test", task, retrieval_metrics(per_query), T0 + dt.timedelta(minutes=minutes),
               key_suffix=f"|{minutes}|{cached}|{batch_size}")
    rec.options["batch_size"] = batch_size
    if cached:
        cache_served(rec)
    store.save(root, rec, per_query)
    return rec


def measured_eval_ips(spec=TINY) -> float:
    image_s = N / spec.ips
    return N / (image_s + image_s / 3)


def test_cached_run_takes_throughput_from_the_latest_run_that_encoded(tmp_path):
    root = tmp_path / "results"
    save(root, dataclasses.replace(TINY, ips=100.0), minutes=0)  # an older measurement
    measured = save(root, minutes=5)
    save(root, minutes=10, cached=True)
    (row,) = [r for _, r in load(root).iterrows()]
    assert row["throughput_cached"] == "image_encode, text_encode"
    assert row["ips_eval"] == pytest.approx(measured_eval_ips())  # not N / 0.018 s of cache reads
    assert row["ips_image_encode"] == pytest.approx(140.0) and row["ips_text_encode"] == pytest.approx(2100.0)
    assert row["latency_stage"] == "image_encode" and row["latency_p50_ms"] == pytest.approx(32_000 / 140)
    assert row["throughput_from"] == f"run {measured.run_key[:12]} of 2025-03-01 09:05 UTC"
    assert row["ips_scoring"] == pytest.approx(N / 0.01)  # the run's own measured stage stays


def test_cached_run_with_no_measurement_reads_cached_everywhere(tmp_path):
    root = tmp_path / "results"
    save(root, batch_size=64, minutes=0)  # another batch size: not this setup's speed
    save(root, minutes=10, cached=True)
    save(root, dataclasses.replace(TINY, model="big-clip", ips=40.0), minutes=1)
    df = load(root)
    row = df[df["model"] == "tiny-clip-synth"].iloc[0]
    assert row["batch_size"] == 32 and pd.isna(row["ips_eval"]) and pd.isna(row["ips_image_encode"])
    assert pd.isna(row["throughput_from"])
    table = main_table(df)[("retrieval", "synthetic", "test")]
    mine = table[table["model"] == "tiny-clip-synth"].iloc[0]
    assert mine["ips_image_encode"] == "cached" and mine["ips_text_encode"] == "cached"
    assert table[table["model"] == "big-clip"].iloc[0]["ips_image_encode"] == pytest.approx(40.0)
    assert "cached" in format_text(df)
    # the Pareto plot gets the measured row only; with the cached row alone there is nothing to draw
    assert tradeoff_plot(df[df["model"] == "tiny-clip-synth"]) is None
    assert tradeoff_plot(df) is not None


def test_page_marks_borrowed_and_cached_speeds(tmp_path):
    root = tmp_path / "results"
    save(root, minutes=0)
    save(root, minutes=10, cached=True)  # borrows from the run above
    other = dataclasses.replace(TINY, model="big-clip", ips=40.0)
    save(root, other, minutes=11, cached=True)  # nothing to borrow from
    page = build(root, tmp_path / "index.html").read_text(encoding="utf-8")
    parser = PageParser()
    parser.feed(page)
    sec = section({"parsed": parser}, "retrieval: synthetic / test")
    by_model = {r["cells"][0]["text"]: r for r in sec["rows"]}
    i = sec["header"].index("eval img/s")
    tiny, big = by_model["tiny-clip-synth"]["cells"][i], by_model["big-clip"]["cells"][i]
    assert tiny["text"].startswith(f"{measured_eval_ips():,.1f}") and "\u2020" in tiny["text"]
    assert "measured by run" in tiny["attrs"]["title"] and "came from the embedding cache" in tiny["attrs"]["title"]
    assert big["text"] == "cached" and "cached" in big["attrs"]["class"]
    assert all(by_model["big-clip"]["cells"][sec["header"].index(h)]["text"] == "cached" for h in ("img/s", "txt/s"))
    p50 = by_model["big-clip"]["cells"][sec["header"].index("p50 ms")]  # its own scoring batches: measured
    assert p50["text"] == "10.00" and p50["attrs"]["title"] == "stage: scoring"
    assert "1 plotted at the throughput of their latest run that encoded; 1 left out" in page
    assert "stage named beside each row" in page
    # the one measured speed in the table is starred, never the cache's
    assert "best" not in big["attrs"]["class"]


def test_zeroshot_rows_served_from_the_cache_show_no_cache_speed(tmp_path):
    """The issue's 120k-141k img/s zero-shot rows: every encode stage came from the cache."""
    root = tmp_path / "results"
    spec = ZEROSHOT_SPECS[0]
    rec = make(spec, "synthetic", "test", "zeroshot", {"acc1": 50.0, "acc5": 70.0, "macro_f1": 49.0,
                                                       "balanced_acc": 50.0}, T0)
    store.save(root, cache_served(rec))
    row = load(root).iloc[0]
    assert pd.isna(row["ips_eval"]) and row["throughput_cached"] == "image_encode, text_encode"


def test_latency_chart_names_the_stage_of_each_row(tmp_path):
    from leaderboard.plots import latency_labels

    root = tmp_path / "results"
    save(root, minutes=0, batch_size=64)
    save(root, dataclasses.replace(TINY, model="big-clip"), minutes=1)
    save(root, minutes=10, cached=True)  # its own latency is of the scoring stage
    df = load(root)
    labels = dict(zip(df["model"], latency_labels(df)))
    assert labels["tiny-clip-synth"] == "tiny-clip-synth \u00b7 scoring"
    assert labels["big-clip"] == "big-clip \u00b7 image_encode"
