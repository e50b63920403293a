"""`vlbench verify`: records made from fixtures against the published reference table --
reproduced, not reproduced, protocol differs, no counterpart, an imported CLIP_benchmark run --
and the table itself (every value has a source)."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.results import store
from harness.results.records import ResultRecord
from harness.verify import compare, perturb, references
from tests.test_leaderboard import make_record

FLICKR = {"t2i_R@1": 58.78, "t2i_R@5": 83.56, "t2i_R@10": 90.02, "i2t_R@1": 78.90, "i2t_R@5": 94.90,
          "i2t_R@10": 98.20}  # open_clip docs/openclip_retrieval_results.csv, ViT-B-32 openai


def flickr_record(shift: dict | None = None, options: dict | None = None, model_extra: dict | None = None,
                  dataset_extra: dict | None = None, model: str = "ViT-B-32/openai") -> ResultRecord:
    metrics = {k: v + (shift or {}).get(k, 0.0) for k, v in FLICKR.items()}
    raw = make_record(model, dataset="flickr30k", split="test", metrics={**metrics, "rsum": sum(metrics.values())})
    raw["model"].update({"activation": "quick_gelu", **(model_extra or {})})
    raw["dataset"].update(dataset_extra or {})
    raw["options"].update({"limit": None, **(options or {})})
    return ResultRecord.from_dict(raw)


def verify(capsys, root: Path) -> tuple[int, str]:
    code = main(["verify", "--results", str(root)])
    out, err = capsys.readouterr()
    return code, out + err


def test_doctests() -> None:
    for module in (compare, references, perturb):
        assert doctest.testmod(module).failed == 0, module.__name__


def test_the_perturbation_check_refuses_a_probe_that_did_not_see_the_perturbation() -> None:
    import importlib.util

    from harness.gate import check
    from harness.results.records import StageTiming

    spec = importlib.util.spec_from_file_location("perturbation_check", Path(__file__).parent.parent
                                                  / "benchmarks" / "perturbation_check.py")
    pc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pc)

    def probe(loglik: float, cached: bool = True) -> ResultRecord:
        raw = make_record("tiny-clip-random", task="linear_probe", metrics={"acc1": 41.0})
        raw["options"]["probe_search"] = [{"c": 1.0, "heldout_acc1": 30.0, "heldout_loglik": loglik}]
        rec = ResultRecord.from_dict(raw)
        rec.timings = {s: StageTiming(1.0, 10, None, cached=cached) for s in ("train_encode", "image_encode")}
        return rec

    base = probe(-1.5)
    ref = {check._key(check.identity(base)): base}
    assert pc.proof([probe(-1.5000001)], ref) == []
    assert "did not see the perturbation" in pc.proof([probe(-1.5)], ref)[0]
    assert "run again, not read from the perturbed cache" in pc.proof([probe(-1.4, cached=False)], ref)[0]


def test_every_reference_cites_a_source_and_a_reason() -> None:
    refs = references.load()
    assert {r.dataset for r in refs} >= {"flickr30k", "coco", "imagenet1k", "sugarcrepe", "winoground",
                                         "flickr8k-expert", "flickr8k-cf"}
    for r in refs:
        fields = references.SOURCE_FIELDS[r.source["kind"]]
        assert all(r.source[f].strip() for f in fields), r.id
        assert r.why and r.checked and r.cite() and r.tolerance > 0, r.id
    repo = [r for r in refs if r.source["kind"] == "repository"]
    assert repo and all(len(r.source["commit"]) == 40 for r in repo)
    sugar = next(r for r in refs if r.dataset == "sugarcrepe")
    assert sorted(sugar.metrics) == sorted(f"acc_{s}" for s in ("add_att", "add_obj", "replace_att", "replace_obj",
                                                                   "replace_rel", "swap_att", "swap_obj"))


@pytest.mark.parametrize("drop, message", [
    ("      commit: f862f86cd92123615a8695ce8bcb6ecc066af452\n", "must name commit"),
    ("    tolerance: 0.5\n", "tolerance must be a positive number"),
])
def test_a_reference_without_its_source_or_tolerance_is_refused(tmp_path, drop, message) -> None:
    text = references.TABLE.read_text(encoding="utf-8")
    assert drop in text
    bad = tmp_path / "references.yaml"
    bad.write_text(text.replace(drop, "", 1), encoding="utf-8")
    with pytest.raises(references.ReferenceError, match=message) as exc:
        references.load(bad)
    assert "openclip-vit-b-32-openai-flickr30k" in str(exc.value) and str(bad) in str(exc.value)


def test_reproduced_within_the_interval(tmp_path, capsys) -> None:
    store.save(tmp_path, flickr_record(shift={"t2i_R@1": 0.3, "i2t_R@5": -0.5}))
    code, out = verify(capsys, tmp_path)
    assert code == 0, out
    assert "ViT-B-32/openai on flickr30k/test (retrieval) vs openclip-vit-b-32-openai-flickr30k: REPRODUCED" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("t2i_R@1"))
    assert row.split() == ["t2i_R@1", "58.78", "59.08", "+0.30", "[58.28,", "59.28]", "reproduced"]
    assert "mlfoundations/open_clip docs/openclip_retrieval_results.csv @ f862f86cd921" in out
    assert "verify: 1 reproduced, 0 not reproduced" in out


def test_missed_exits_1_naming_metric_difference_and_interval(tmp_path, capsys) -> None:
    store.save(tmp_path, flickr_record(shift={"i2t_R@1": -1.2}))
    code, out = verify(capsys, tmp_path)
    assert code == 1
    row = next(line for line in out.splitlines() if line.strip().startswith("i2t_R@1"))
    assert row.split() == ["i2t_R@1", "78.90", "77.70", "-1.20", "[78.40,", "79.40]", "NOT", "reproduced"]
    assert ": NOT REPRODUCED" in out and "verify: 0 reproduced, 1 not reproduced" in out


@pytest.mark.parametrize("kwargs, named", [
    ({"model_extra": {"activation": "gelu"}}, "activation: gelu, the reference used quick_gelu"),
    ({"options": {"limit": 100}}, "a --limit 100 subset, the reference used the whole split"),
    ({"options": {"precision": "bf16"}}, "precision: bf16, the reference used fp32 or amp"),
    ({"dataset_extra": {"images": 990, "info": {"dropped_missing_images": 10}}},
     "10 item(s) of the split were dropped (dropped_missing_images)"),
    ({"options": {"weights": "/w/b32.pt"}}, "weights from --weights /w/b32.pt"),
])
def test_a_different_protocol_is_named_not_compared(tmp_path, capsys, kwargs, named) -> None:
    # numbers far off: were they compared, this would be a miss (exit 1)
    store.save(tmp_path, flickr_record(shift={"t2i_R@1": -20.0}, **kwargs))
    code, out = verify(capsys, tmp_path)
    assert code == 0, out
    assert ": PROTOCOL DIFFERS" in out and named in out and "t2i_R@1  58.78" not in out
    assert "0 not reproduced, 1 with a different protocol" in out


def test_a_record_without_a_published_counterpart_is_counted_not_compared(tmp_path, capsys) -> None:
    store.save(tmp_path, ResultRecord.from_dict(make_record("tiny-clip-synth")))
    store.save(tmp_path, flickr_record(model="ViT-B-16/openai"))  # other weights: no reference
    code, out = verify(capsys, tmp_path)
    assert code == 0
    assert "no record has a published counterpart" in out and "2 record(s) with no published counterpart" in out


def test_human_agreement_without_the_clipscore_prompt_is_a_protocol_difference(tmp_path, capsys) -> None:
    raw = make_record("ViT-B-32/openai", dataset="flickr8k-expert", task="human_agreement",
                      metrics={"kendall_tau_c": 51.3})
    raw["model"]["activation"] = "quick_gelu"
    raw["options"].update(limit=None, kendall_variant="c", pair_score="CLIP-S = 2.5 * max(cos, 0)")
    store.save(tmp_path, ResultRecord.from_dict(raw))
    code, out = verify(capsys, tmp_path)
    assert code == 0 and "text_prompt: '', the reference used 'A photo depicts'" in out
    raw["options"]["text_prompt"] = "A photo depicts"
    raw["run_key"] += "-prompted"
    raw["created_at"] = "2025-02-02T03:04:05+00:00"
    store.save(tmp_path, ResultRecord.from_dict(raw))
    code, out = verify(capsys, tmp_path)
    assert code == 0 and "flickr8k-expert/test (human_agreement) vs clipscore-flickr8k-expert: REPRODUCED" in out


def test_an_imported_clip_benchmark_run_is_verified_too(tmp_path, capsys) -> None:
    # CLIP_benchmark's own numbers for ViT-B-32 openai on ImageNet (benchmark/benchmark.csv) reproduce...
    src = tmp_path / "cb.json"
    src.write_text(json.dumps({"dataset": "imagenet1k", "model": "ViT-B-32", "pretrained": "openai",
                               "task": "zeroshot_classification", "language": "en",
                               "metrics": {"acc1": 0.63322, "acc5": 0.88808, "mean_per_class_recall": 0.63338}}))
    results = tmp_path / "store"
    assert main(["import", "clip-benchmark", str(src), "--results", str(results)]) == 0
    capsys.readouterr()
    code, out = verify(capsys, results)
    assert code == 0, out
    assert "ViT-B-32/openai on imagenet1k/val (zeroshot) [imported from CLIP_benchmark] vs " \
           "clip-benchmark-vit-b-32-openai-imagenet1k: REPRODUCED" in out
    assert "not stated by the record (assumed as the reference): images, classes, templates, precision, activation" in out
    # ... and a peer's run that lands 1 point lower does not
    src2 = tmp_path / "cb2.json"
    src2.write_text(src.read_text().replace("0.63322", "0.62322"))
    assert main(["import", "clip-benchmark", str(src2), "--results", str(tmp_path / "store2")]) == 0
    capsys.readouterr()
    code, out = verify(capsys, tmp_path / "store2")
    row = next(line for line in out.splitlines() if line.strip().startswith("acc1"))
    assert code == 1 and row.split() == ["acc1", "63.32", "62.32", "-1.00", "[63.02,", "63.62]", "NOT", "reproduced"]


def test_verify_refuses_model_without_invariance(tmp_path, capsys) -> None:
    code, out = verify_args(capsys, "--results", str(tmp_path), "--model", "tiny-clip-synth")
    assert code == 2 and "--model/--dataset go with --invariance" in out


def verify_args(capsys, *argv: str) -> tuple[int, str]:
    code = main(["verify", *argv])
    out, err = capsys.readouterr()
    return code, out + err


def test_the_page_marks_compared_rows_with_the_reason_as_title() -> None:
    from leaderboard.frame import records_to_frame
    from leaderboard.page import PageOptions, render_page

    ok = flickr_record()
    off = flickr_record(options={"precision": "bf16"})
    off.run_key, off.options["precision"] = "other", "bf16"
    plain = ResultRecord.from_dict(make_record("tiny-clip-synth"))
    df = records_to_frame([ok, off, plain])
    assert sorted(df["reproduced"].dropna()) == ["protocol differs", "reproduced"]
    html = render_page(df, options=PageOptions(plots=False))
    assert html.count('class="repro reproduced"') == 1 and html.count('class="repro protocol-differs"') == 1
    assert "\u2713 published" in html and "precision: bf16, the reference used fp32 or amp" in html


# RAIVNLab/sugar-crepe issue 3, comment by JieyuZ2 (2023-10-04): row OpenAI of Table 5 per part
SUGARCREPE_OPENAI_B32 = {"replace_obj": 90.92, "replace_att": 80.08, "replace_rel": 69.20, "swap_obj": 61.38,
                         "swap_att": 63.96, "add_obj": 77.20, "add_att": 68.79}


def test_the_sugarcrepe_reference_is_the_authors_per_part_numbers() -> None:
    sugar = next(r for r in references.load() if r.id == "sugarcrepe-vit-b-32-openai")
    assert sugar.metrics == {f"acc_{k}": v for k, v in SUGARCREPE_OPENAI_B32.items()}
    assert sugar.source["kind"] == "issue" and sugar.source["url"] == "https://github.com/RAIVNLab/sugar-crepe/issues/3"
    assert sugar.rechecked and sugar.protocol["activation"] == "quick_gelu"
    assert sugar.cite().startswith("https://github.com/RAIVNLab/sugar-crepe/issues/3 (JieyuZ2")
    # every reference in the table is now marked as read against its source
    assert all(r.rechecked for r in references.load())


@pytest.mark.parametrize("old, new, message", [
    ("      date: \"2023-10-04\"\n", "", "the issue source must name date"),
    ("url: https://github.com/RAIVNLab/sugar-crepe/issues/3", "url: https://example.com/x",
     "source.url must be an issue of RAIVNLab/sugar-crepe"),
])
def test_an_issue_source_must_say_where_and_when(tmp_path, old, new, message) -> None:
    text = references.TABLE.read_text(encoding="utf-8")
    assert old in text
    bad = tmp_path / "references.yaml"
    bad.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(references.ReferenceError, match=message) as exc:
        references.load(bad)
    assert "sugarcrepe-vit-b-32-openai" in str(exc.value)


def sugarcrepe_record(activation: str, shift: float = 0.0) -> ResultRecord:
    metrics = {f"acc_{k}": v + shift for k, v in SUGARCREPE_OPENAI_B32.items()}
    raw = make_record("ViT-B-32/openai", dataset="sugarcrepe", split="test", task="caption_selection",
                      metrics={**metrics, "acc": sum(metrics.values()) / len(metrics)})
    raw["model"].update(activation=activation, activation_from="test")
    raw["options"].update(limit=None, scorer="cosine")
    raw["run_key"] += activation
    return ResultRecord.from_dict(raw)


def test_sugarcrepe_is_compared_only_when_the_activation_matches(tmp_path, capsys) -> None:
    """A GELU run of OpenAI's weights (sugar-crepe #7) is named, with how to build QuickGELU; the
    QuickGELU run of the same weights is held to the numbers."""
    store.save(tmp_path / "gelu", sugarcrepe_record("gelu", shift=-3.0))
    code, out = verify(capsys, tmp_path / "gelu")
    assert code == 0 and "vs sugarcrepe-vit-b-32-openai: PROTOCOL DIFFERS" in out
    assert "activation: gelu, the reference used quick_gelu (--model-option activation=quick_gelu builds it)" in out
    store.save(tmp_path / "quick", sugarcrepe_record("quick_gelu", shift=0.4))
    code, out = verify(capsys, tmp_path / "quick")
    assert code == 0 and "vs sugarcrepe-vit-b-32-openai: REPRODUCED" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("acc_swap_obj"))
    assert row.split() == ["acc_swap_obj", "61.38", "61.78", "+0.40", "[60.38,", "62.38]", "reproduced"]
    store.save(tmp_path / "miss", sugarcrepe_record("quick_gelu", shift=-1.5))
    code, out = verify(capsys, tmp_path / "miss")
    assert code == 1 and "vs sugarcrepe-vit-b-32-openai: NOT REPRODUCED" in out
