"""A split exported with ``vlbench data export-wds`` and read back as ``wds:DIR`` gives exactly
the same metrics and per-query ranks as the original layout: synthetic (zero-shot and
retrieval) and Flickr8k dev (retrieval), in one process and over 2 ranks; the image bytes
in the shards are the original files' bytes."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest
from conftest import FLICKR8K, ROOT, needs_flickr8k

from harness.cli.main import main
from harness.results.store import iter_record_files, queries_path
from harness.run.runner import RunOptions, RunStatus, expand, run_one

pytest.importorskip("webdataset", reason="webdataset is a base dependency (pyproject); run make setup")
MODEL = "tiny-clip-synth"


def export(dataset: str, split: str, out: Path, task: str, *extra: str) -> Path:
    assert main(["data", "export-wds", dataset, "--split", split, "--out", str(out), "--task", task,
                 "--samples-per-shard", "16", *extra]) == 0
    return out


def run(dataset: str, task: str, split: str, results: Path, **opts):
    spec, = [s for s in expand(MODEL, dataset, [task], split, RunOptions(**opts)) if s.task == task]
    outcome = run_one(spec, results)
    assert outcome.status == RunStatus.DONE
    return outcome.record, json.loads(queries_path(outcome.path).read_text())


HARD_NEGATIVE = "hn_"  # synthetic's hard-negative groups come from scene data the layout does not hold


def assert_same(orig_metrics: dict, orig_side: dict, metrics: dict, side: dict) -> None:
    """Every metric and per-query list of the read-back run equals the original's; the original
    has nothing more than its hard-negative group scores."""
    assert metrics == {k: v for k, v in orig_metrics.items() if not k.startswith(HARD_NEGATIVE)}
    same = lambda d: {k: v for k, v in d.items() if not k.startswith(HARD_NEGATIVE) and k != "run_key"}
    assert same(side) == same(orig_side) and same(side)


def fresh_embeddings(monkeypatch, tmp_path: Path, name: str) -> None:
    """The read-back run must encode its images from the shards, not hit the original's cache
    entries (the images have the same content digest, so they would)."""
    monkeypatch.setenv("VLBENCH_EMBEDDINGS", str(tmp_path / name))


@pytest.mark.parametrize("task", ["retrieval", "zeroshot"])
def test_synthetic_round_trip_in_one_process(tmp_path, monkeypatch, task):
    out = export("synthetic", "test", tmp_path / "wds", task, "--limit", "64")
    assert (out / "dataset_type.txt").read_text() == ("retrieval\n" if task == "retrieval" else "classification\n")
    orig = run("synthetic", task, "test", tmp_path / "a", limit=64, chunk_items=32)
    fresh_embeddings(monkeypatch, tmp_path, "emb-wds")
    back = run(f"wds:{out}", task, "test", tmp_path / "b", chunk_items=32)
    assert_same(orig[0].metrics, orig[1], back[0].metrics, back[1])
    assert back[0].timings["image_encode"].cached_items == 0
    assert orig[0].dataset["images_digest"] == back[0].dataset["images_digest"]  # same images, by content


def test_export_copies_image_bytes_and_refuses_to_overwrite(tmp_path, capsys):
    from harness.datasets import DATASETS, DatasetRequest, TaskKind

    out = export("synthetic", "val", tmp_path / "wds", "zeroshot", "--limit", "20")
    data = DATASETS.get("synthetic").load(DatasetRequest("val", TaskKind.ZEROSHOT, limit=20))
    with tarfile.open(out / "val" / "1.tar") as tf:
        assert tf.extractfile("s0000016.png").read() == Path(data.images.paths[16]).read_bytes()
        assert tf.extractfile("s0000016.cls").read() == str(data.labels[16]).encode()
    assert (out / "val" / "nshards.txt").read_text() == "2\n"
    assert (out / "zeroshot_classification_templates.txt").read_text().splitlines()[0] == \
        data.templates[0].replace("{}", "{c}")
    capsys.readouterr()
    assert main(["data", "export-wds", "synthetic", "--split", "val", "--out", str(out), "--task", "zeroshot"]) == 2
    assert "already exists; export into a new folder (nothing was written)" in capsys.readouterr().err
    assert main(["data", "export-wds", "synthetic", "--split", "test", "--out", str(out), "--task", "retrieval"]) == 2
    assert "dataset_type.txt exists with other content" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["classnames.txt", "dataset_type.txt", "val",
                                                     "zeroshot_classification_templates.txt"]  # no partial test/


@needs_flickr8k()
def test_flickr8k_dev_round_trip(tmp_path, monkeypatch):
    root = str(FLICKR8K.parent)
    out = export("flickr8k", "dev", tmp_path / "wds", "retrieval", "--data-root", root)
    orig = run("flickr8k", "retrieval", "dev", tmp_path / "a", limit=64, data_root=root)
    fresh_embeddings(monkeypatch, tmp_path, "emb-wds")
    back = run(f"wds:{out}", "retrieval", "dev", tmp_path / "b", limit=64)
    assert_same(orig[0].metrics, orig[1], back[0].metrics, back[1])
    assert back[0].dataset["images"] == 64 and back[0].dataset["captions"] == orig[0].dataset["captions"]
    with tarfile.open(out / "dev" / "0.tar") as tf:
        first = tf.extractfile("s0000000.jpg").read()
    names = (FLICKR8K / "text" / "Flickr_8k.devImages.txt").read_text().split()
    assert first in {(FLICKR8K / "Flicker8k_Dataset" / n).read_bytes() for n in names[:5]}


@pytest.mark.parametrize("task", ["retrieval", "zeroshot"])
def test_two_ranks_on_shards_equal_one_process_on_the_original(tmp_path, task):
    from test_distributed import launch

    # 48 samples in 3 shards of 16; with 16-item cache chunks each rank encodes whole shards
    out = export("synthetic", "test", tmp_path / "wds", task, "--limit", "48")
    results = launch(["run", "--model", MODEL, "--dataset", f"wds:{out}", "--task", task, "--chunk-items", "16",
                      "--results", str(tmp_path / "dist")],
                     env={"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
                          "VLBENCH_EMBEDDINGS": str(tmp_path / "emb-dist")})
    for rank, r in enumerate(results):
        assert r.returncode == 0, f"rank {rank}: {r.stderr[-2000:]}"
    (path,) = iter_record_files(tmp_path / "dist")
    dist = json.loads(path.read_text()), json.loads(queries_path(path).read_text())
    orig = run("synthetic", task, "test", tmp_path / "a", limit=48, chunk_items=16)
    assert_same(orig[0].metrics, orig[1], dist[0]["metrics"], dist[1])
    assert dist[0]["options"]["world_size"] == 2
    ranks = dist[0]["environment"]["distributed"]["ranks"]
    assert sorted(r["timings"]["image_encode"]["items"] for r in ranks) == [16, 32]  # shards {1} and {0, 2}


def test_pixels_without_files_export_as_lossless_png(tmp_path):
    import numpy as np

    from harness.datasets import DATASETS, DatasetRequest, TaskKind
    from harness.datasets.base import ClassificationData
    from harness.datasets.export_wds import export as export_data
    from harness.datasets.images import ArrayImages

    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 6, 7, 3), dtype=np.uint8)
    data = ClassificationData("arr", "test", ArrayImages(pixels, [f"arr#{i}" for i in range(5)]), [0, 1, 1, 0, 1],
                              ["a", "b"], ["a photo of a {}."], fingerprint="x")
    done = export_data(data, tmp_path / "wds", "test")
    assert (done["samples"], done["shards"], done["reencoded_png"]) == (5, 1, 5)
    back = DATASETS.get(f"wds:{tmp_path / 'wds'}").load(DatasetRequest("test", TaskKind.ZEROSHOT))
    assert back.labels == data.labels and back.templates == data.templates and back.classnames == ["a", "b"]
    assert all((np.asarray(back.images.load(i)) == pixels[i]).all() for i in range(5))
