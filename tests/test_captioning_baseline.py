"""The committed captioning baseline: one entry per run of the captioning suite, with the
suite's options, every caption metric the suite reports, the gate line in CI, and the README's
captioner table stating the baseline's own numbers (so neither can drift from the other)."""

from __future__ import annotations

import re
from pathlib import Path

from harness.gate.check import load_baseline
from harness.run.suites import get_suite

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "benchmarks" / "baselines" / "captioning.json"
METRICS = {"bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider", "clip_s", "refclip_s"}


def test_the_baseline_covers_the_suite_with_its_options():
    suite, baseline = get_suite("captioning"), load_baseline(BASELINE)
    entries = {(e["model"], e["dataset"], e["split"], e["task"]): e for e in baseline["entries"]}
    assert set(entries) == {(r.model, r.dataset, r.split, r.task) for r in suite.entries}
    for e in entries.values():
        assert set(e["metrics"]) == METRICS, e["model"]
        assert e["task_options"] == "do_sample=false,judge=tiny-clip-synth,max_new_tokens=30,num_beams=3,tokenizer=java"
        assert (e["device"], e["precision"], e["limit"]) == ("cpu", "fp32", None)


def test_ci_gates_it_after_the_default_baseline():
    ci = (ROOT / ".ci" / "run").read_text()
    default = ci.index("check --baseline benchmarks/baselines/default.json --results .cache/ci-results")
    assert ci.index("check --baseline benchmarks/baselines/captioning.json --results .cache/ci-results "
                    "--no-throughput") > default


def test_the_readme_states_the_baseline_s_numbers():
    readme = (ROOT / "README.md").read_text()
    columns = ["cider", "bleu1", "bleu4", "meteor", "rouge_l", "clip_s", "refclip_s"]
    for e in load_baseline(BASELINE)["entries"]:
        row = re.search(rf"^\| {re.escape(e['model'])}[^|]* \|(.+)\|$", readme, re.M)
        assert row, e["model"]
        cells = [re.match(r"\s*([\d.]+)", c).group(1) for c in row.group(1).split("|")]
        assert cells == [f"{e['metrics'][m]:.2f}" for m in columns], e["model"]
