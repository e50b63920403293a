"""`vlbench verify --invariance`: a batch-size-dependent score is caught (the runs faked), a
precision variant is held to its tolerance, and a real tiny CLIP on the embedded default does
not move with batch size, chunk size or amp."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from harness.cli.main import main
from harness.core.interfaces import Precision
from harness.verify import invariance


@dataclass
class _Rec:
    metrics: dict


def fake_runs(monkeypatch, metrics_of):
    """run_one replaced: the record's metrics are ``metrics_of(options)``; returns the calls."""
    calls = []

    def run_one(spec, results, force=False):
        calls.append((spec, results))
        return type("Outcome", (), {"record": _Rec(metrics_of(spec.options))})()

    monkeypatch.setattr(invariance, "run_one", run_one)
    return calls


def test_a_score_that_moves_with_the_batch_size_is_reported(monkeypatch, capsys) -> None:
    # lmms-eval #236 in miniature: accuracy depends on the batch size
    calls = fake_runs(monkeypatch, lambda o: {"acc1": 69.56 if o.batch_size == 64 else 58.70, "acc5": 90.0})
    code = main(["verify", "--invariance", "--model", "tiny-clip-synth", "--dataset", "synthetic",
                 "--task", "zeroshot", "--limit", "20"])
    out = capsys.readouterr().out
    assert code == 1
    assert "CHANGED  tiny-clip-synth" in out and "batch_size 7" in out and "acc1 69.56 -> 58.7" in out
    assert "tiny-clip-synth zeroshot batch_size 7: acc1 69.56 -> 58.7 (allowed +-1e-09)" in out
    assert "invariance: 2 variant run(s) within tolerance, 1 changed by batch or chunk size (a defect)" in out
    # every run on the same seeded subset, without the embedding cache, each in its own folder
    assert {s.options.limit for s, _ in calls} == {20} and not any(s.options.use_cache for s, _ in calls)
    assert len({str(r) for _, r in calls}) == 4


def test_a_precision_variant_is_held_to_the_precisions_tolerance(monkeypatch) -> None:
    tol = invariance.PRECISION_TOLERANCE[Precision.AMP]
    fake_runs(monkeypatch, lambda o: {"acc1": 50.0 + (tol * 0.9 if o.precision is Precision.AMP else 0.0)})
    out = invariance.check(["tiny-clip-synth"], "synthetic", ["zeroshot"], report=lambda line: None)
    assert not out.failed and [c.variant for c in out.changes] == ["batch_size 7", "chunk_items 30", "precision amp"]
    fake_runs(monkeypatch, lambda o: {"acc1": 50.0 + (tol * 1.1 if o.precision is Precision.AMP else 0.0)})
    out = invariance.check(["tiny-clip-synth"], "synthetic", ["zeroshot"], report=lambda line: None)
    assert not out.failed  # reported, not a defect: lower precision flips near-tied scores
    assert [(c.variant, c.metric) for c in out.beyond_precision] == [("precision amp", "acc1")]
    assert "1 precision run(s) past the precision's tolerance (reported)" in invariance.summary(out)


def test_a_task_the_model_cannot_run_is_named_not_silently_dropped(monkeypatch) -> None:
    fake_runs(monkeypatch, lambda o: {"acc": 50.0})
    out = invariance.check(["fusion-early-synth"], "synthetic", ["zeroshot", "caption_selection"],
                           report=lambda line: None)
    assert out.notes == ["fusion-early-synth: zeroshot not run (fusion-early-synth cannot run it on synthetic)"]
    assert {c.task for c in out.changes} == {"caption_selection"}


def test_invariance_needs_a_model_and_a_dataset(capsys) -> None:
    assert main(["verify", "--invariance", "--dataset", "synthetic"]) == 2
    assert "needs --model M" in capsys.readouterr().err


@pytest.mark.slow
def test_tiny_clip_zeroshot_does_not_move_with_batch_chunk_or_amp(capsys) -> None:
    code = main(["verify", "--invariance", "--model", "tiny-clip-synth", "--dataset", "synthetic",
                 "--task", "zeroshot", "--limit", "24", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "invariance: 3 variant run(s) within tolerance, 0 changed by batch or chunk size" in out
