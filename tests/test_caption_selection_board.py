"""caption_selection through the runner's rows, the leaderboard (intervals, lead tests, bars) and the gate."""

from __future__ import annotations

import numpy as np

from harness.gate import check
from harness.metrics import selection as CM
from harness.results import store
from harness.results.records import ResultRecord
from harness.tasks import caption_selection as task
from leaderboard import load
from leaderboard.uncertainty import UncertaintyOptions, annotate
from tests.test_leaderboard import make_record

FAST = UncertaintyOptions(n_boot=300, seed=0)
SPEC = CM.SelectionSpec(("swap", "replace"), pooled={"all": ("swap", "replace")})


def _outcomes(quality: float, seed: int, n: int = 120) -> dict:
    rng = np.random.default_rng(seed)
    subset = [0] * (n // 3) + [1] * (n - n // 3)
    groups = rng.random((40, 3)) < quality
    return {"cs_correct": (rng.random(n) < quality).astype(int).tolist(), "cs_subset": subset,
            "cs_category": [-1] * n, "cs_subsets": list(SPEC.subsets), "cs_categories": [],
            "cs_spec": [SPEC.to_json()], "text_score": groups[:, 0].astype(int).tolist(),
            "image_score": groups[:, 1].astype(int).tolist(),
            "group_score": (groups[:, 0] & groups[:, 1]).astype(int).tolist()}


def _save(root, model, per_query):
    metrics = task.metrics_from_outcomes(per_query)
    raw = make_record(model, task="caption_selection", metrics=metrics)
    raw["main_metric"] = "acc"
    return store.save(root, ResultRecord.from_dict(raw), per_query), metrics


def test_intervals_lead_test_and_page(tmp_path):
    good, bad = _outcomes(0.9, 1), _outcomes(0.55, 2)
    _, m_good = _save(tmp_path, "good", good)
    _save(tmp_path, "bad", bad)
    out = annotate(load(tmp_path), FAST).set_index("model")
    for key in ("acc", "acc_swap", "acc_replace", "acc_all", "text_score", "image_score", "group_score"):
        lo, hi = out.loc["good", f"{key}_lo"], out.loc["good", f"{key}_hi"]
        assert lo <= m_good[key] <= hi and lo < hi, key
    # acc_swap's interval resamples only its own 40 items: wider than the pooled one over 120
    width = {k: out.loc["good", f"{k}_hi"] - out.loc["good", f"{k}_lo"] for k in ("acc_swap", "acc_all")}
    assert width["acc_swap"] > width["acc_all"]
    assert out.loc["good", "lead_over"] == "bad" and out.loc["good", "lead_p"] < 0.05
    from leaderboard.page import render_page

    html = render_page(annotate(load(tmp_path), FAST))
    assert "accuracy per subset" in html and "caption_selection: synthetic / test" in html
    assert html.index(">acc<") < html.index(">group_score<") < html.index(">acc_replace<")


def test_runner_gives_every_kind_its_rows():
    from dataclasses import replace

    from harness.core.interfaces import ModelKind, ModelMeta
    from harness.run.runner import RunOptions, expand
    from harness.tasks import TASKS

    rerank_settings = lambda meta, task, o: TASKS.get(task).settings(meta, o)  # noqa: E731

    both = ModelMeta("b", "blip", ModelKind.BOTH, "hf:x", loader=lambda o: None)
    cross = replace(both, kind=ModelKind.CROSS, prefilter="p")
    opts = RunOptions(rerank_k=10)
    assert rerank_settings(both, "caption_selection", opts).rerank_k is None            # ITM row
    assert rerank_settings(both, "caption_selection", replace(opts, rerank_k=0)).rerank_k == 0  # ITC row
    assert rerank_settings(cross, "caption_selection", opts).rerank_k is None           # every pair, no prefilter
    specs = [(s.task, s.options.rerank_k) for s in expand("fusion-xattn-synth", "synthetic", None, None, RunOptions())]
    assert ("caption_selection", None) in specs and all(t in ("retrieval", "caption_selection") for t, _ in specs)


def test_gate_flags_a_caption_selection_drop(tmp_path):
    per_query = _outcomes(0.9, 1)
    path, metrics = _save(tmp_path / "base", "good", per_query)
    baseline = check.make_baseline([store.read_record(path)], "t")
    worse = dict(per_query, cs_correct=[0] * 10 + per_query["cs_correct"][10:])
    _save(tmp_path / "now", "good", worse)
    findings = check.compare(check.load_records(tmp_path / "now"), baseline, throughput=False)
    bad = {f.metric for f in findings if f.status == "regression"}
    assert "acc" in bad and "acc_swap" in bad and "group_score" not in bad
    assert check.tolerance_for("group_score", baseline["tolerances"]) == 0.5


def test_lead_test_needs_the_same_items():
    from leaderboard.selection import selection_lead_pvalue

    a, other_items = _outcomes(0.9, 1), _outcomes(0.5, 2, n=90)
    assert selection_lead_pvalue(a, other_items, "acc") is None
    assert selection_lead_pvalue(a, other_items, "group_score") is not None  # the same 40 groups
    assert selection_lead_pvalue(a, a, "acc") == 1.0
