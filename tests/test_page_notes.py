"""The page says what it could not show: a truncated per-query file drops a row's intervals
with a visible note; model names with ``$`` (matplotlib mathtext) still plot."""

from __future__ import annotations

import datetime as dt

from harness.results import store
from leaderboard import PageOptions, UncertaintyOptions, build
from tests.lb_fixtures import T0, Spec, make, retrieval_metrics, retrieval_outcomes

OPTS = PageOptions(uncertainty=UncertaintyOptions(n_boot=50))


def save(root, spec: Spec, seed: int):
    per_query = retrieval_outcomes(spec, seed=seed)
    rec = make(spec, "synthetic", "test", "retrieval", retrieval_metrics(per_query), T0 + dt.timedelta(minutes=seed))
    return store.save(root, rec, per_query)


def test_truncated_sidecar_is_named_on_the_page(tmp_path):
    results = tmp_path / "results"
    save(results, Spec("good-model", "clip", quality=0.6), 1)
    bad = save(results, Spec("cut-model", "clip", quality=0.4), 2)
    side = store.queries_path(bad)
    side.write_bytes(side.read_bytes()[: side.stat().st_size // 2])  # a sidecar cut short (crash, full disk)
    page = build(results, tmp_path / "index.html", options=PageOptions(plots=False, uncertainty=OPTS.uncertainty)
                 ).read_text()
    assert page.count('class="note warn"') == 1
    note = page[page.index('class="note warn"'):].split("</p>", 1)[0]
    assert "<b>cut-model</b>" in note and "per-query file unusable" in note and str(side) in note
    assert "good-model" not in note


def test_dollar_signs_in_model_names_plot(tmp_path):
    results = tmp_path / "results"
    names = ["$\\frac{a$", "cost $5-$10", "plain"]
    for i, name in enumerate(names):
        save(results, Spec(name, "clip", quality=0.3 + 0.2 * i, ips=50.0 + 40 * i), i + 1)
    for j in range(2):  # a second run of one entry: the trend plot draws too
        spec = Spec(names[1], "clip", quality=0.2 + 0.1 * j)
        per_query = retrieval_outcomes(spec, seed=20 + j)
        rec = make(spec, "synthetic", "test", "retrieval", retrieval_metrics(per_query),
                   T0 - dt.timedelta(days=1 + j), key_suffix=f"|old{j}")
        store.save(results, rec, per_query)
    page = build(results, tmp_path / "index.html", options=OPTS).read_text()
    assert page.count("data:image/png;base64,") == 4  # tradeoff, recall curves, latency, trend
    assert "cost $5-$10" in page  # the table shows the name as typed
