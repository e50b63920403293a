"""Timing-sensitive checks, run by `make perf-check` (CI runs it), not by `make test`: each
measures wall time, so a loaded machine could fail them although the code is right.

The throughput-ratio gate fails when a slowdown is planted in each path and passes the same
code unchanged (planted slowdowns make a path about 3x slower, so the verdicts hold on a
loaded machine); a Stage leaves its warm-up batches out of latency and items/s."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from benchmarks.timing import perf_plants
from harness.cli.main import main
from harness.core.measure import Stage
from harness.gate.perf import gate
from harness.gate.perf.benches import run_bench
from tests.test_perfgate import FLOORS, SMALL, TOL, _floors_file


def test_gate_passes_unchanged_code_and_fails_a_planted_copy_end_to_end(tmp_path, monkeypatch, capsys):
    clean = run_bench("scoring", SMALL["scoring"])
    path, results = _floors_file(tmp_path, clean.ratio), tmp_path / "results"
    assert main(["check", "--throughput-ratios", str(path), "--results", str(results)]) == 0
    saved = gate.read_result(results)
    assert saved["passed"] is True and saved["benches"][0]["status"] == "ok"
    assert saved["benches"][0]["floor"] == pytest.approx(clean.ratio * (1 - TOL))

    perf_plants.copy_embeddings(monkeypatch)
    assert main(["check", "--throughput-ratios", str(path), "--results", str(results)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "scoring" in out
    saved = gate.read_result(results)
    assert saved["passed"] is False and saved["benches"][0]["ratio"] < clean.ratio * (1 - TOL)


def _verdicts(kind: str, plant, monkeypatch) -> tuple[gate.RatioFinding, gate.RatioFinding]:
    opts = SMALL[kind]
    # a warm-up pair first: a first call's one-off costs must not lower the floor this test sets
    clean = run_bench(kind, replace(opts, warmup=1))
    floor = gate.Floor(kind, kind, clean.ratio, TOL, opts)
    plant(monkeypatch)
    planted = run_bench(kind, replace(opts, repeats=2))  # ~4x slower: two pairs suffice
    return gate.evaluate(floor, clean), gate.evaluate(floor, planted)


@pytest.mark.parametrize("kind", ["image_encode", "text_encode", "rerank"])
def test_sleep_per_batch_fails_the_gate(kind, monkeypatch):
    # factor 3 (4x the loop): the text bench's batches take 2-5 ms, where one stall of the
    # scheduler is a large share; once in a full-suite CI run a 3x plant measured "ok"
    clean, planted = _verdicts(kind, lambda mp: perf_plants.sleep_per_batch(mp, factor=3.0), monkeypatch)
    assert clean.status == "ok"
    assert planted.status == "regression", planted.reason
    assert planted.measurement.ratio < 0.5 * clean.measurement.ratio


def test_extra_device_sync_fails_the_gate(monkeypatch):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("an extra device sync costs nothing on CPU; needs a CUDA device")
    # the bench on the GPU (on CPU a sync is a no-op), a model whose batches keep the GPU busy
    # for a good share of the host's decode of the next one; benchmarks/gpu_check.py runs the same
    opts = replace(SMALL["image_encode"], model="open_clip:ViT-B-16", items=600, batch_size=200, device="cuda")
    clean = run_bench("image_encode", opts)
    perf_plants.extra_device_sync(monkeypatch)
    planted = run_bench("image_encode", opts)
    assert gate.evaluate(gate.Floor("i", "image_encode", clean.ratio, 0.05, opts), planted).status == "regression"


@pytest.mark.slow
def test_slow_process_exit_fails_the_whole_process_gate(tmp_path):
    from harness.gate.perf.process import whole_process

    (committed,) = gate.load_floors(FLOORS, only=["process"])
    opts = replace(committed.options, items=8, batch_size=8, repeats=1, warmup=0)
    planted = whole_process(opts, plant_path=perf_plants.slow_process_exit(tmp_path, factor=2.5))
    # one pair of processes: at load 25 a bare process alone took 0.5-2x a vlbench run, so the
    # plant makes vlbench 3.5x slower than itself, not merely 2x slower than the bare process
    assert gate.evaluate(committed, planted).status == "regression", planted
    assert planted.extra["stage_floor_s"] > 0


def test_stage_excludes_warmup_batches():
    with Stage("encode", warmup=1) as st:
        with st.batch(10):
            w0 = time.perf_counter()
            time.sleep(0.05)  # a slow first batch (lazy init) must not enter the percentiles
            warm = time.perf_counter() - w0  # on a busy machine the sleep overshoots: use what it took
        for _ in range(3):
            with st.batch(10):
                time.sleep(0.005)
    t = st.timing()
    assert t.items == 40 and t.batches == 4
    assert t.latency_ms["p99"] < 40  # the 50 ms warm-up batch is excluded
    assert t.seconds >= 0.06
    assert t.items_per_s == pytest.approx(30 / (t.seconds - warm), rel=0.5)
    assert t.items_per_s > 40 / t.seconds  # faster than counting the warm-up
    assert t.peak_rss_mb > 0
