"""The captioning table on the page: bootstrap intervals by image and the paired lead test for
the metrics that are means of per-image scores (CIDEr-D, ROUGE-L, SPICE, CLIP-S, RefCLIP-S, and
their per-group keys), BLEU recomputed from resampled images' statistics, none for METEOR, and
the note saying how."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pytest

from harness.metrics.captioning import bleu_from_statistics
from harness.results import store
from harness.results.records import ResultRecord, StageTiming
from leaderboard import stats
from leaderboard.captioning import bleu_units, caption_parts, group_columns, has_caption_interval
from leaderboard.frame import load
from leaderboard.page import PageOptions, render_page
from leaderboard.uncertainty import UncertaintyOptions, annotate

N = 60
DOMAIN = ["in-domain"] * 20 + ["out-domain"] * 40
T0 = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)


def per_image(seed: int, shift: float) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    cider = np.clip(rng.normal(80 + shift, 40, N), 0, None)
    out = {"cider": cider.tolist(), "rouge_l": np.clip(rng.normal(50 + shift / 4, 10, N), 0, 100).tolist(),
           "bleu4": np.clip(rng.normal(20, 10, N), 0, 100).tolist(), "caption": [f"caption {i}" for i in range(N)]}
    for domain in ("in_domain", "out_domain"):  # a group's own corpus: other document frequencies
        idx = [i for i, d in enumerate(DOMAIN) if d.replace("-", "_") == domain]
        out[f"cider_{domain}"] = (cider[idx] * 1.1).tolist()
    testlen = rng.integers(4, 13, N)
    guess = np.maximum(0, testlen[:, None] - np.arange(4)[None, :])
    correct = np.minimum(guess, np.sort(rng.integers(0, 9, (N, 4)), axis=1)[:, ::-1])
    out["bleu_stats"] = np.column_stack([testlen, testlen + rng.integers(-2, 3, N), guess, correct]).tolist()
    return out


def record(model: str, queries: dict, minute: int) -> ResultRecord:
    metrics = {k: float(np.mean(v)) for k, v in queries.items() if k not in ("caption", "bleu_stats")}
    # a corpus statistic, not the mean of the per-image scores: from the summed statistics
    metrics["bleu4"] = float(bleu_from_statistics(np.asarray(queries["bleu_stats"]).sum(axis=0))[3])
    return ResultRecord(
        model={"name": model, "family": "tiny-captioner", "kind": "captioner", "source": {"test": True},
               "checkpoint": f"{model}.safetensors", "checkpoint_sha256": "ab" * 32, "params": 1000},
        dataset={"name": "nocaps", "split": "val", "fingerprint": "f1ng3rpr1nt0000", "images": N},
        task="captioning", options={"batch_size": 32, "device": "cpu", "precision": "fp32", "seed": 0,
                                    "limit": None, "task_options": {"tokenizer": "python"}},
        metrics=metrics, main_metric="cider",
        timings={"generate": StageTiming(seconds=1.0, items=N, items_per_s=float(N)),
                 "scoring": StageTiming(seconds=0.5, items=N, items_per_s=2.0 * N)},
        memory={"peak_rss_mb": 500.0, "peak_device_mem_mb": None},
        environment={"harness_version": "0.1.0", "git_sha": "0123456789abcdef", "torch": "2.5.1",
                     "python": "3.11.9", "device_name": "Test CPU"},
        created_at=(T0 + dt.timedelta(minutes=minute)).isoformat(timespec="seconds"), runtime_s=2.0,
        run_key=hashlib.sha256(model.encode()).hexdigest()[:24])


@pytest.fixture()
def board(tmp_path):
    strong, weak = per_image(0, 30.0), per_image(1, 0.0)
    store.save(tmp_path, record("captioner-strong", strong, 0), strong)
    store.save(tmp_path, record("captioner-weak", weak, 1), weak)
    return tmp_path, strong, weak


def test_which_caption_keys_get_intervals():
    assert [has_caption_interval(k) for k in ("cider", "rouge_l", "spice", "clip_s", "refclip_s", "cider_out_domain",
                                              "refclip_s_in_domain", "bleu1", "bleu4_in_domain")] == [True] * 9
    assert [has_caption_interval(k) for k in ("meteor", "meteor_in_domain", "cider_lo", "bleu5")] == [False] * 4
    assert caption_parts({"cider": np.array(["a", "b"])}, "cider") is None  # not numbers: no interval
    assert group_columns(["cider", "cider_in_domain", "bleu4_in_domain", "spice_out_domain", "rouge_l_in_domain"],
                         lambda c: True) == ["cider_in_domain", "spice_out_domain"]


def test_intervals_and_the_lead_test_come_from_the_per_image_scores(board):
    root, strong, weak = board
    opts = UncertaintyOptions(n_boot=300, seed=0)
    rows = annotate(load(root), opts).set_index("model")
    for key in ("cider", "rouge_l", "cider_in_domain", "cider_out_domain"):
        want = stats.sum_of_means_ci([np.asarray(strong[key])], n_boot=300, seed=0)
        got = (rows.at["captioner-strong", f"{key}_lo"], rows.at["captioner-strong", f"{key}_hi"])
        assert got == pytest.approx(want, abs=1e-12)
        assert got[0] <= rows.at["captioner-strong", key] <= got[1]
    rows_of, statistic = bleu_units({"bleu_stats": np.asarray(strong["bleu_stats"])}, "bleu4")
    want = stats.units_ci(rows_of, statistic, n_boot=300, seed=0)
    assert (rows.at["captioner-strong", "bleu4_lo"], rows.at["captioner-strong", "bleu4_hi"]) == pytest.approx(want)
    assert want[0] <= rows.at["captioner-strong", "bleu4"] <= want[1] and want[0] < want[1]
    assert "meteor_lo" not in rows.columns
    p = stats.paired_sum_pvalue([np.asarray(strong["cider"])], [np.asarray(weak["cider"])], n_boot=300, seed=0)
    assert rows.at["captioner-strong", "lead_p"] == pytest.approx(p) and p < 0.05
    assert rows.at["captioner-strong", "lead_over"] == "captioner-weak"


def test_the_page_shows_them_with_the_note(board):
    root, strong, _ = board
    page = render_page(load(root), options=PageOptions(plots=False, uncertainty=UncertaintyOptions(n_boot=200)))
    section = page[page.index('data-task="captioning"'):]
    lo, hi = stats.sum_of_means_ci([np.asarray(strong["cider_out_domain"])], n_boot=200, seed=0)
    assert f"{lo:.2f}\u2013{hi:.2f}" in section  # the per-domain CIDEr-D column with its interval
    assert ">cider_in_domain<" in section and ">cider_out_domain<" in section
    assert "summed statistics" in section and "METEOR has none" in section and "200 resamples" in section
