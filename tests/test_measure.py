import time

import pytest

from harness.core.measure import Stage, percentiles


def test_percentiles_match_linear_interpolation():
    assert percentiles([]) == {}
    p = percentiles([4.0, 1.0, 3.0, 2.0, 5.0])
    assert p == {"p50": 3.0, "p90": pytest.approx(4.6), "p99": pytest.approx(4.96)}


def test_stage_without_batches_reports_whole_stage():
    with Stage("scoring", warmup=0) as st:
        time.sleep(0.01)
        st.add_items(100)
    t = st.timing()
    assert t.items == 100 and t.batches == 0 and t.latency_ms == {}
    assert t.items_per_s == pytest.approx(100 / t.seconds)
