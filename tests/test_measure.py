import time

import pytest

from harness.core.measure import Stage, percentiles


def test_percentiles_match_linear_interpolation():
    assert percentiles([]) == {}
    p = percentiles([4.0, 1.0, 3.0, 2.0, 5.0])
    assert p == {"p50": 3.0, "p90": pytest.approx(4.6), "p99": pytest.approx(4.96)}


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


def test_stage_without_batches_reports_whole_stage():
    with Stage("scoring", warmup=0) as st:
        time.sleep(0.01)
        st.add_items(100)
    t = st.timing()
    assert t.items == 100 and t.batches == 0 and t.latency_ms == {}
    assert t.items_per_s == pytest.approx(100 / t.seconds)
