"""End to end through the command line, on the embedded default (tiny models, small subsets)."""

import json
import subprocess
import sys

import pytest

from harness.cli.main import main
from harness.metrics.functional import MetricKey
from tests.conftest import ROOT, needs_flickr8k

RETRIEVAL_KEYS = {"t2i_R@1", "t2i_R@5", "t2i_R@10", "i2t_R@1", "i2t_R@5", "i2t_R@10", "rsum", "mean_R@1",
                  "t2i_medr", "i2t_medr", "t2i_meanr", "i2t_meanr"}
ZEROSHOT_KEYS = {"acc1", "acc5", "macro_f1", "balanced_acc"}


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_is_instant_and_imports_no_torch():
    code = ("import sys, harness.cli.main as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "import harness.models, harness.datasets, harness.tasks, harness.run.suites\n"
            "assert 'torch' not in sys.modules, 'torch imported at import time'\n"
            "assert 'open_clip' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, cwd=ROOT)


@pytest.mark.parametrize("what,expected", [("models", ["tiny-clip-synth", "ViT-B-32/openai", "clip"]),
                                           ("datasets", ["synthetic", "flickr8k"]),
                                           ("tasks", ["retrieval", "zeroshot"]),
                                           ("suites", ["default"])])
def test_list(capsys, what, expected):
    code, out, _ = run_cli(capsys, "list", what)
    assert code == 0
    for name in expected:
        assert name in out


def test_run_writes_records_then_skips_then_forces(capsys, tmp_path):
    results = tmp_path / "results"
    # synthetic offers more tasks than these two (caption_selection, ...): name the two this test is about
    args = ["run", "--model", "tiny-clip-random", "--dataset", "synthetic", "--limit", "40", "--task", "retrieval",
            "--task", "zeroshot", "--batch-size", "16", "--workers", "0", "--results", str(results)]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    files = sorted(p for p in results.rglob("*.json") if not p.name.endswith(".queries.json"))
    assert len(files) == 2  # retrieval and zeroshot
    records = {json.loads(p.read_text())["task"]: json.loads(p.read_text()) for p in files}
    ret, zs = records["retrieval"], records["zeroshot"]
    assert RETRIEVAL_KEYS <= set(ret["metrics"]) and set(zs["metrics"]) == ZEROSHOT_KEYS
    assert all(k.startswith("hn_") for k in set(ret["metrics"]) - RETRIEVAL_KEYS)  # synthetic swap pairs
    assert ret["main_metric"] == MetricKey.RSUM.value and zs["main_metric"] == MetricKey.ACC1.value
    assert ret["dataset"]["images"] == 40 and ret["dataset"]["captions"] == 200
    assert ret["dataset"]["info"]["subset"]["limit"] == 40
    assert ret["schema_version"] == 1 and ret["options"]["batch_size"] == 16
    for stage in ("image_encode", "text_encode", "scoring"):
        t = ret["timings"][stage]
        assert t["seconds"] > 0 and t["items"] > 0 and t["items_per_s"] > 0
    assert ret["timings"]["image_encode"]["batches"] == 3  # 40 images / 16
    assert ret["timings"]["image_encode"]["latency_ms"]["p50"] > 0
    assert ret["environment"]["torch"] and ret["environment"]["harness_version"]
    sidecar = files[0].with_name(files[0].stem + ".queries.json")
    queries = json.loads(sidecar.read_text())
    assert len(queries.get("t2i_rank", queries.get("correct"))) in (200, 40)

    mtimes = {p: p.stat().st_mtime_ns for p in files}
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and out.count("skipped") == 2
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes

    code, out, _ = run_cli(capsys, *args, "--force")
    assert code == 0 and "skipped" not in out
    assert any(p.stat().st_mtime_ns != mtimes[p] for p in files)

    code, out, _ = run_cli(capsys, "leaderboard", "--results", str(results), "--out", str(tmp_path / "lb.html"))
    assert code == 0 and "tiny-clip-random" in out
    assert "tiny-clip-random" in (tmp_path / "lb.html").read_text()


def test_same_run_gives_same_metrics(capsys, tmp_path):
    """Deterministic: two stores, same spec, identical numbers."""
    metrics = []
    for sub in ("a", "b"):
        run_cli(capsys, "run", "--model", "tiny-clip-random", "--limit", "30", "--task", "retrieval",
                "--workers", "0", "--results", str(tmp_path / sub))
        (f,) = [p for p in (tmp_path / sub).rglob("*.json") if not p.name.endswith(".queries.json")]
        metrics.append(json.loads(f.read_text())["metrics"])
    assert metrics[0] == metrics[1]


def test_unknown_model_is_one_line_with_suggestion(capsys, tmp_path):
    code, out, err = run_cli(capsys, "run", "--model", "tiny-clip-synht", "--results", str(tmp_path))
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "unknown model 'tiny-clip-synht'; did you mean: tiny-clip-synth" in err
    assert not any(tmp_path.iterdir())


def test_clip_offline_fails_in_one_line_naming_the_fix(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--model", "clip", "--limit", "8",
                           "--results", str(tmp_path / "r")], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "ViT-B-32/openai" in lines[0] and "--weights PATH" in lines[0]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.json"))


def test_missing_weights_path_is_named(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--model", "tiny-clip-synth", "--weights", str(tmp_path / "no.safetensors"),
                           "--limit", "8", "--results", str(tmp_path))
    assert code == 2 and "no.safetensors" in err


def test_bad_options_are_user_errors(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--model", "tiny-clip-random", "--batch-size", "0",
                           "--results", str(tmp_path))
    assert code == 2 and "--batch-size" in err
    code, _, err = run_cli(capsys, "run", "--model", "tiny-clip-random", "--device", "tpu",
                           "--results", str(tmp_path))
    assert code == 2 and "tpu" in err
    code, _, err = run_cli(capsys, "run", "--model", "tiny-clip-random", "--split", "nope",
                           "--results", str(tmp_path))
    assert code == 2 and "no split 'nope'" in err


def test_sweep_runs_suite_file_and_resumes(capsys, tmp_path, monkeypatch):
    suite = tmp_path / "mini.yaml"
    suite.write_text("name: mini\nruns:\n  - models: tiny-clip-random\n    datasets: synthetic\n"
                     "    tasks: [retrieval, zeroshot]\n    limit: 24\n")
    results = tmp_path / "res"
    code, out, err = run_cli(capsys, "sweep", "--suite", str(suite), "--workers", "0", "--results", str(results))
    assert code == 0, err
    assert "2 runs" in out
    code, out, _ = run_cli(capsys, "sweep", "--suite", str(suite), "--workers", "0", "--results", str(results))
    assert code == 0 and out.count("skipped") == 2


def test_sweep_model_filter_runs_only_that_models_runs(capsys, tmp_path):
    suite = tmp_path / "mini.yaml"
    suite.write_text("name: mini\nruns:\n  - models: [tiny-clip-random, tiny-clip-synth]\n    datasets: synthetic\n"
                     "    tasks: [zeroshot]\n    limit: 24\n")
    results = tmp_path / "res"
    code, out, err = run_cli(capsys, "sweep", "--suite", str(suite), "--model", "tiny-clip-random", "--workers", "0",
                             "--results", str(results))
    assert code == 0, err
    assert "1 runs" in out and "tiny-clip-random" in out and "tiny-clip-synth " not in out
    code, _, err = run_cli(capsys, "sweep", "--suite", str(suite), "--model", "fusion-late-synth",
                           "--results", str(results))
    assert code == 2 and "suite mini has no runs of 'fusion-late-synth'" in err
    assert "its models: tiny-clip-random, tiny-clip-synth" in err


def test_bad_suite_names_file_and_key(capsys, tmp_path):
    suite = tmp_path / "bad.yaml"
    suite.write_text("runs:\n  - models: [a]\n    datasets: [b]\n    taks: [retrieval]\n")
    code, _, err = run_cli(capsys, "sweep", "--suite", str(suite), "--results", str(tmp_path))
    assert code == 2 and "bad.yaml" in err and "taks" in err


def test_data_describe_synthetic(capsys):
    code, out, _ = run_cli(capsys, "data", "describe", "synthetic", "--split", "val")
    assert code == 0
    assert "retrieval.images: 1000" in out and "retrieval.captions: 5000" in out
    assert "zeroshot.classes: 24" in out and "usable: True" in out


@needs_flickr8k()
def test_data_describe_flickr8k_missing_split_fails(capsys):
    code, out, _ = run_cli(capsys, "data", "describe", "flickr8k", "--split", "test")
    assert code == 1
    assert "usable: False" in out and "1000 of 1000 images are missing" in out
