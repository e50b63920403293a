"""Caption metrics as human_agreement scorers (``--model metric:NAME``): the published
Flickr8k-Expert tau-c of Hessel et al. 2021 (Table 1) on the official file, the text-only
run end to end on a fixture, references, and CLIP-S / RefCLIP-S with a registry judge."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import FLICKR8K
from imagefiles import jpeg_bytes
from judgment_fixture import write_fixture
from test_human_agreement import fixture_captions

pytest.importorskip("pycocoevalcap.bleu.bleu", reason="pycocoevalcap is not installed")
scipy_stats = pytest.importorskip("scipy.stats")

from harness.datasets import DATASETS, DatasetRequest, TaskKind  # noqa: E402
from harness.metrics.agreement import kendall_tau  # noqa: E402
from harness.metrics.captioning import evaluate_captions  # noqa: E402
from harness.metrics.ptb_tokenize import java_missing  # noqa: E402
from harness.tasks import metric_scorers as J  # noqa: E402

# Hessel et al. 2021 (CLIPScore), Table 1: Flickr8k-Expert Kendall tau-c
PUBLISHED_TAU_C = {"bleu1": 32.3, "bleu4": 30.8, "rouge_l": 32.3, "meteor": 41.8, "cider": 43.9}
JAVA_WHY = java_missing()


def load(name: str, root: Path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DATASETS.get(name).load(DatasetRequest(split="test", task=TaskKind.HUMAN_AGREEMENT,
                                                      data_root=str(root), **kw))


def row_tau(per_pair: list[float], data) -> float:
    return 100 * kendall_tau(np.asarray(per_pair)[data.row_pair], data.human, data.variant)


@pytest.fixture(scope="module")
def expert():
    """The official Expert file, text only (this copy has none of the test images)."""
    if not FLICKR8K.is_dir():
        pytest.skip(f"Flickr8k development copy not found at {FLICKR8K}")
    data = load("flickr8k-expert", FLICKR8K.parent, images=False)
    assert (len(data.pair_image), len(data.human), data.info["dropped_own_caption_pairs"]) == (5664, 16992, 158)
    return data


@pytest.mark.slow
@pytest.mark.skipif(JAVA_WHY is not None, reason=f"Java metrics: {JAVA_WHY}")
def test_published_flickr8k_expert_tau_c_with_java(expert):
    cands, refs = J.pair_references(expert)
    assert all(len(r) == 5 for r in refs)  # Expert: the candidate is never one of the five
    scores = evaluate_captions(cands, refs, tuple(PUBLISHED_TAU_C), tokenizer="java")
    taus = {m: row_tau(scores.per_item[m], expert) for m in PUBLISHED_TAU_C}
    print("Flickr8k-Expert tau-c measured vs published:", {m: (round(t, 2), PUBLISHED_TAU_C[m]) for m, t in taus.items()})
    for m, published in PUBLISHED_TAU_C.items():
        assert abs(taus[m] - published) <= 0.1, (m, taus[m], published)
    rows = np.asarray(scores.per_item["cider"])[expert.row_pair]
    assert taus["cider"] == pytest.approx(100 * scipy_stats.kendalltau(rows, expert.human, variant="c").statistic)


@pytest.mark.slow
@pytest.mark.skipif(JAVA_WHY is None, reason="Java runs here: the test above covers these metrics, and "
                    "test_caption_eval the Java-free tokenizer's equality with the jar on every Flickr8k caption")
def test_published_flickr8k_expert_tau_c_without_java(expert):
    """Where there is no Java, the Java-free path reproduces the published values of its metrics."""
    cands, refs = J.pair_references(expert)
    keys = ("bleu1", "bleu4", "rouge_l", "cider")
    scores = evaluate_captions(cands, refs, keys, tokenizer="python")
    for m in keys:
        assert abs(row_tau(scores.per_item[m], expert) - PUBLISHED_TAU_C[m]) <= 0.1, m


# ------------------------------------------------------------------------- on a fixture

@pytest.fixture
def text_only(tmp_path: Path) -> Path:
    """A judgment fixture in the official layout with its image folder removed."""
    caps = fixture_captions()
    root = write_fixture(tmp_path, caps, sorted(caps)[:6], lambda q: jpeg_bytes((10 * len(q), 40, 90)))
    shutil.rmtree(root / "flickr8k" / "Flicker8k_Dataset")
    return root


def test_reference_metric_runs_on_a_copy_with_only_text_files(text_only: Path, tmp_path: Path):
    from harness.run.runner import RunOptions, RunSpec, run_one

    spec = RunSpec("metric:cider", "flickr8k-expert", "human_agreement", options=RunOptions(data_root=str(text_only)))
    rec = run_one(spec, tmp_path / "results").record
    data = load("flickr8k-expert", text_only, images=False)
    cands, refs = J.pair_references(data)
    want = row_tau(evaluate_captions(cands, refs, ("cider",)).per_item["cider"], data)
    assert rec.metrics["kendall_tau_c"] == pytest.approx(want, abs=1e-9)
    assert np.isfinite(want) and want != 0
    assert rec.model["kind"] == "metric" and rec.model["name"] == "metric:cider"
    assert rec.options["caption_metric"] == "cider" and rec.options["pair_score"].startswith("CIDEr-D")
    assert rec.options["tokenizer"] in ("ptb-java", "ptb-python") and rec.dataset["images_digest"] is None
    assert rec.dataset["info"]["images_read"] is False
    with pytest.raises(Exception, match="image folder not found"):  # an image scorer still needs them
        load("flickr8k-expert", text_only)


def test_candidate_is_left_out_of_its_own_references(text_only: Path):
    data = load("flickr8k-cf", text_only, images=False)  # CF keeps the own-caption pairs
    caps = fixture_captions()
    own = [p for p, k in enumerate(data.pair_own_ref) if k >= 0]
    assert len(own) == 6
    cands, refs = J.pair_references(data)
    for p in own:
        q = data.images.key(data.pair_image[p])
        assert cands[p] == caps[q][0] and refs[p] == caps[q][1:]
    other = next(p for p, k in enumerate(data.pair_own_ref) if k < 0)
    assert refs[other] == caps[data.images.key(data.pair_image[other])]
    sub = load("flickr8k-cf", text_only, images=False, limit=2)  # a subset keeps them lined up
    assert len(sub.references) == 2 and len(sub.pair_own_ref) == len(sub.pair_image)


def test_metric_names_resolve_or_say_what_is_wrong():
    from harness.core.interfaces import ModelKind
    from harness.models import resolve

    meta = resolve("metric:bleu4")
    assert meta.kind is ModelKind.METRIC and not meta.reads_images and "pycocoevalcap" in meta.source
    assert resolve("metric:clip_s:tiny-clip-synth").reads_images
    for name, match in [("metric:blue", "unknown caption metric 'blue'"), ("metric:clip_s", "needs a judge"),
                        ("metric:cider:tiny-clip-synth", "takes no judge"),
                        ("metric:refclip_s:dandelin/vilt-b32-finetuned-coco", "judge must be a dual encoder")]:
        with pytest.raises(Exception, match=match):
            resolve(name)


def test_metrics_run_human_agreement_only():
    from harness.core.errors import UserError
    from harness.models import resolve
    from harness.run.runner import RunOptions, expand
    from harness.tasks import TASKS

    with pytest.raises(UserError, match="retrieval needs a .* model; metric:cider is metric"):
        TASKS.get("retrieval").check_model(resolve("metric:cider"))
    assert [s.task for s in expand("metric:cider", "flickr8k-expert", None, None, RunOptions())] == ["human_agreement"]


def test_clip_s_and_refclip_s_with_a_registry_judge(tmp_path: Path):
    import torch

    from harness.models import resolve
    from harness.tasks import human_agreement as H
    from harness.tasks.encode import EncodeOptions

    caps = fixture_captions()
    root = write_fixture(tmp_path, caps, sorted(caps)[:4], lambda q: jpeg_bytes((10 * len(q), 40, 90)))
    data = load("flickr8k-cf", root)
    judge = resolve("tiny-clip-synth").load()
    with torch.no_grad():
        img = judge.encode_images(torch.stack([judge.image_transform()(data.images.load(i))
                                               for i in range(len(data.images))]))
        txt = judge.encode_texts(judge.tokenize(["A photo depicts " + c for c in data.captions]))
    cos = (img[data.pair_image] * txt[data.pair_caption]).sum(1)
    want_clip = 2.5 * cos.clamp(min=0)
    opts = EncodeOptions(batch_size=4)
    res = H.evaluate(resolve("metric:clip_s:tiny-clip-synth").load(), data, opts)
    assert res.per_query["score"] == pytest.approx(want_clip[data.row_pair].double().tolist(), abs=1e-5)
    assert res.details["caption_metric"] == "clip_s" and res.details["judge"] == "tiny-clip-synth"
    with torch.no_grad():
        best = []
        for p, c in enumerate(data.pair_caption):
            i, own = data.pair_image[p], data.pair_own_ref[p]
            refs = [r for k, r in enumerate(data.references[i]) if k != own]
            emb = judge.encode_texts(judge.tokenize(["A photo depicts " + r for r in refs]))
            best.append(float((emb @ txt[c]).max().clamp(min=0)))
    best = torch.tensor(best)
    want_ref = 2 * want_clip * best / (want_clip + best)
    res = H.evaluate(resolve("metric:refclip_s:tiny-clip-synth").load(), data, opts)
    assert res.per_query["score"] == pytest.approx(want_ref[data.row_pair].double().tolist(), abs=1e-5)
    assert res.details["pair_score"].startswith("RefCLIP-S")


def test_meteor_without_java_is_one_line_and_writes_nothing(text_only: Path, tmp_path: Path, monkeypatch):
    from harness.core.errors import UserError
    from harness.run.runner import RunOptions, RunSpec, run_one

    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    spec = RunSpec("metric:meteor", "flickr8k-expert", "human_agreement", options=RunOptions(data_root=str(text_only)))
    with pytest.raises(UserError, match=r"^metric:meteor: meteor needs Java: no `java` on PATH: .*default-jre-headless\)$"):
        run_one(spec, tmp_path / "results")
    assert not list((tmp_path / "results").rglob("*.json"))


def test_page_table_puts_metrics_and_models_side_by_side():
    import pandas as pd

    from leaderboard import agreement

    df = pd.DataFrame({
        "task": ["human_agreement"] * 4 + ["retrieval"], "label": ["metric:cider", "<b>clip</b>", "<b>clip</b>",
                                                                   "metric:bleu4", "clip"],
        "kind": ["metric", "dual", "dual", "metric", "dual"], "precision": ["fp32"] * 5, "device": ["cpu"] * 5,
        "dataset": ["flickr8k-expert", "flickr8k-expert", "flickr8k-cf", "flickr8k-expert", "coco"],
        "split": ["test"] * 5, "main_metric": ["kendall_tau_c", "kendall_tau_c", "kendall_tau_b", "kendall_tau_c", "rsum"],
        "main_value": [43.89, 51.2, 34.4, 30.78, 300.0],
        "kendall_tau_c_lo": [41.9, 49.0, None, None, None], "kendall_tau_c_hi": [46.1, 53.3, None, None, None]})
    html = agreement.section(df)
    assert html.index("&lt;b&gt;clip&lt;/b&gt;") < html.index("metric:cider") < html.index("metric:bleu4")
    assert "<b>clip" not in html and "coco" not in html  # escaped; other tasks left out
    assert "43.89 <small>[41.9, 46.1]</small>" in html and ">30.78</td>" in html
    assert "flickr8k-cf / test" in html and html.count('data-sort="">-</td>') == 2  # no CF run of the metrics
    assert "caption metric" in html and "model (CLIP-S)" in html
    assert agreement.section(df[df["label"] == "metric:cider"]) == ""  # one scorer: nothing to compare
    import doctest

    assert doctest.testmod(agreement).failed == 0
