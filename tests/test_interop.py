"""`vlbench export` (the leaderboard frame as csv / parquet / jsonl, round-tripped through
pandas) and `vlbench import clip-benchmark` (CLIP_benchmark result JSONs in their real format
-> validated records, marked as imported, on the page but never on a throughput plot)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

import leaderboard
from harness.cli.main import main
from harness.importers import clip_benchmark as cb
from harness.results import store
from tests.lb_fixtures import build_results

FIXTURES = Path(__file__).resolve().parent / "data" / "clip_benchmark"
F30K = FIXTURES / "flickr30k_openai_ViT-B-32_en_zeroshot_retrieval.json"
COCO = FIXTURES / "wds_mscoco_captions_laion2b_s34b_b79k_ViT-B-32_en_zeroshot_retrieval.json"
CIFAR = FIXTURES / "cifar10_openai_ViT-B-32_en_zeroshot_classification.json"


@pytest.fixture(scope="module")
def fixture_store(tmp_path_factory) -> dict:
    """The leaderboard fixture store, and how many latest rows per task it has."""
    root = tmp_path_factory.mktemp("export") / "results"
    info = build_results(root)
    rows = {task: sum(len(v) for (t, _), v in info["outcomes"].items() if t == task)
            for task in ("retrieval", "zeroshot")}
    return {"root": root, "rows": rows}


@pytest.fixture
def results(fixture_store) -> Path:
    return fixture_store["root"]


# -- export --------------------------------------------------------------------------------------
def test_parquet_round_trips_every_value_and_dtype(fixture_store, tmp_path):
    results, rows = fixture_store["root"], fixture_store["rows"]
    out = tmp_path / "lb.parquet"
    assert main(["export", "--results", str(results), "--format", "parquet", "--out", str(out)]) == 0
    expected = leaderboard.load(results)
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    assert len(expected) == sum(rows.values()) and expected["rsum"].notna().sum() == rows["retrieval"]


def _same_values(back: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(back.columns) == list(expected.columns) and len(back) == len(expected)
    for col in expected.columns:
        want = expected[col]
        got = back[col]
        if col == "created_at":
            got = pd.to_datetime(got, utc=True).astype(want.dtype)
            assert got.tolist() == want.tolist(), col
        elif pd.api.types.is_numeric_dtype(want):
            pd.testing.assert_series_equal(pd.to_numeric(got).astype("float64"), want.astype("float64"),
                                           check_names=False, rtol=1e-12)
        else:
            assert got.astype("object").where(got.notna(), None).tolist() == \
                want.astype("object").where(want.notna(), None).tolist(), col


def test_csv_and_jsonl_round_trip_through_pandas(results, tmp_path):
    expected = leaderboard.load(results)
    for fmt, read in (("csv", lambda p: pd.read_csv(p, dtype={c: "string" for c in ("git_sha", "run_key")},
                                                    keep_default_na=False, na_values=[""])),
                      ("jsonl", lambda p: pd.read_json(p, lines=True, dtype=False))):
        out = tmp_path / f"lb.{fmt}"
        assert main(["export", "--results", str(results), "--format", fmt, "--out", str(out)]) == 0
        _same_values(read(out), expected)
    assert out.read_text(encoding="utf-8").count("\n") == len(expected)  # one JSON object a line


def test_export_history_to_stdout(results, capsys):
    assert main(["export", "--results", str(results), "--format", "jsonl", "--history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(leaderboard.load(results, history=True)) > len(leaderboard.load(results))
    assert {json.loads(line)["model"] for line in lines} >= {"tiny-clip-synth", "blip"}


def test_export_errors_are_one_line_and_write_nothing(results, tmp_path, capsys):
    assert main(["export", "--results", str(results), "--format", "parquet"]) == 2
    assert "give --out FILE" in capsys.readouterr().err
    assert main(["export", "--results", str(tmp_path / "none"), "--format", "csv", "--out",
                 str(tmp_path / "x.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


# -- import clip-benchmark --------------------------------------------------------------------------
def test_metric_mapping_hand_computed():
    rec = cb.parse(F30K)
    assert rec.task == "retrieval" and rec.main_metric == "rsum"
    assert rec.metrics == pytest.approx({"t2i_R@1": 58.86, "i2t_R@1": 78.9, "t2i_R@5": 83.48, "i2t_R@5": 94.5,
                                         "t2i_R@10": 89.82, "i2t_R@10": 98.0,
                                         "rsum": 58.86 + 78.9 + 83.48 + 94.5 + 89.82 + 98.0})
    assert rec.model["name"] == "ViT-B-32/openai" and rec.model["params"] == 151_277_313  # registered
    assert (rec.dataset["name"], rec.dataset["split"]) == ("flickr30k", "test")
    assert rec.timings == {} and rec.environment["imported_from"] == "CLIP_benchmark"
    coco = cb.parse(COCO, cb.ImportOptions(split="test"))
    assert (coco.dataset["name"], coco.dataset["split"]) == ("coco", "test")  # wds/ dropped, Karpathy test
    assert coco.metrics == pytest.approx({"t2i_R@5": 65.48980712890625, "i2t_R@5": 79.06000018119812})
    assert "rsum" not in coco.metrics  # R@1 and R@10 were not computed
    zs = cb.parse(CIFAR)
    assert zs.task == "zeroshot" and zs.metrics == pytest.approx({"acc1": 89.83, "acc5": 99.54,
                                                                  "balanced_acc": 89.83})


def test_nan_acc5_is_left_out_and_imagenet_test_is_val(tmp_path):
    path = tmp_path / "in.json"
    with open(path, "w") as f:  # json.dump writes NaN as CLIP_benchmark's dumps do (< 5 classes)
        json.dump({"dataset": "imagenet1k", "model": "RN50", "pretrained": "/ckpt/my_rn50.pt",
                   "task": "zeroshot_classification", "language": "en",
                   "metrics": {"acc1": 0.5, "acc5": math.nan, "mean_per_class_recall": 0.25}}, f)
    assert "NaN" in path.read_text()
    rec = cb.parse(path)
    assert rec.metrics == {"acc1": 50.0, "balanced_acc": 25.0}
    assert rec.dataset["split"] == "val" and rec.model["name"] == "RN50/my_rn50.pt"
    assert rec.model["checkpoint"] == "/ckpt/my_rn50.pt"
    zh = json.loads(F30K.read_text())
    zh["language"] = "zh"
    (tmp_path / "zh.json").write_text(json.dumps(zh))
    assert cb.parse(tmp_path / "zh.json").dataset["name"] == "flickr30k-zh"  # translated captions: other data


def test_imported_records_validate_render_marked_and_stay_off_throughput(results, tmp_path, capsys):
    root = tmp_path / "results"
    shutil.copytree(results, root)
    files = [str(F30K), str(COCO), str(CIFAR)]
    assert main(["import", "clip-benchmark", *files, "--results", str(root)]) == 0
    written = [line.split(" -> ")[1] for line in capsys.readouterr().out.splitlines()]
    assert len(written) == 3
    for path in written:
        rec = store.read_record(Path(path))  # validates the schema
        assert rec.timings == {} and rec.environment["source_sha256"]
    again = tmp_path / "again"
    assert main(["import", "clip-benchmark", *files, "--results", str(again)]) == 0  # same keys, same paths
    assert sorted(p.name for p in again.rglob("*.json")) == sorted(Path(p).name for p in written)

    df = leaderboard.load(root)
    imported = df[df["imported_from"] == "CLIP_benchmark"]
    assert sorted(imported["label"]) == ["ViT-B-32/laion2b_s34b_b79k [CLIP_benchmark]",
                                         "ViT-B-32/openai [CLIP_benchmark]", "ViT-B-32/openai [CLIP_benchmark]"]
    assert imported[[c for c in df.columns if c.startswith("ips_")]].isna().all().all()
    assert df["imported_from"].isna().sum() == len(df) - 3  # the vlbench runs are not marked

    from leaderboard.plots import tradeoff_plot

    assert tradeoff_plot(imported) is None  # accuracy vs throughput: no point without a timing
    page = leaderboard.render_html(df, history=leaderboard.load(root, history=True),
                                   options=leaderboard.PageOptions(plots=False))
    assert page.count("ViT-B-32/openai [CLIP_benchmark]") >= 2 and "flickr30k" in page and "coco" in page


@pytest.mark.parametrize("payload, message", [
    ("{not json", "not a CLIP_benchmark result JSON"),
    ("[1, 2]", "a CLIP_benchmark result is a JSON object"),
    ('{"dataset": "cifar10", "model": "RN50", "pretrained": "openai", "task": "zeroshot_classification"}',
     "missing key(s) metrics"),
    ('{"dataset": "cifar10", "model": "RN50", "pretrained": "openai", "task": "linear_probe", '
     '"metrics": {"lp_acc1": 0.5}}', "task 'linear_probe' cannot be imported"),
    ('{"dataset": "cifar10", "model": "RN50", "pretrained": "openai", "task": "zeroshot_classification", '
     '"metrics": {"acc1": 0.5, "top1": 0.5}}', "metrics.top1: no vlbench equivalent"),
    ('{"dataset": "cifar10", "model": "RN50", "pretrained": "openai", "task": "zeroshot_classification", '
     '"metrics": {"acc1": 89.8}}', "metrics.acc1 = 89.8: CLIP_benchmark writes fractions"),
])
def test_bad_files_fail_naming_file_and_key_and_write_nothing(tmp_path, capsys, payload, message):
    bad = tmp_path / "bad.json"
    bad.write_text(payload, encoding="utf-8")
    out = tmp_path / "results"
    assert main(["import", "clip-benchmark", str(F30K), str(bad), "--results", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vlbench: error: {bad}:") and message in err and "\n" not in err
    assert not out.exists()  # the good file before it was not written either
