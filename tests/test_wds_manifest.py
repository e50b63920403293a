"""Every manifest entry of CLIP_benchmark's webdataset collection loads a fixture shard written
in the published layout from a local copy under the data root, names its hub repository, and
is ranked by a metric its task reports (DataComp's conventions where they differ)."""

from __future__ import annotations

import warnings

import pytest
import torch
import yaml

from harness.datasets import DATASETS, DatasetRequest, TaskKind
from harness.metrics import functional as M
from harness.run.runner import RunOptions, expand, run_one
from tests import wds_fixture as F
from tests.conftest import ROOT

pytest.importorskip("webdataset", reason="webdataset is a base dependency (pyproject); run make setup")
MANIFEST = yaml.safe_load((ROOT / "datasets_manifest.yaml").read_text())["datasets"]
WDS = sorted(n for n, e in MANIFEST.items() if e["format"] == "wds")
ZEROSHOT_METRICS = {"acc1", "acc5", "macro_f1", "balanced_acc"}
RETRIEVAL_METRICS = {k.value for k in M.metrics_from_ranks(torch.tensor([1]), torch.tensor([1]))}
DATACOMP = {"wds_vtab-caltech101": "balanced_acc", "wds_fgvc_aircraft": "balanced_acc", "wds_vtab-flowers":
            "balanced_acc", "wds_vtab-pets": "balanced_acc", "wds_flickr30k": "mean_R@1",
            "wds_mscoco_captions": "mean_R@1", "wds_imagenet1k": "acc1", "wds_vtab-cifar10": "acc1"}


def test_the_collection_is_listed():
    want = {"wds_imagenet1k", "wds_imagenetv2", "wds_imagenet_sketch", "wds_imagenet-a", "wds_imagenet-r",
            "wds_imagenet-o", "wds_objectnet", "wds_flickr30k", "wds_mscoco_captions", "wds_vtab-cifar100",
            "wds_vtab-svhn", "wds_vtab-pcam", "wds_cars", "wds_food101", "wds_sun397"}
    assert want <= set(WDS) and len(WDS) >= 40
    for name, metric in DATACOMP.items():
        assert MANIFEST[name]["main_metric"] == metric, name


@pytest.mark.parametrize("name", WDS)
def test_entry_reads_a_fixture_shard_in_the_published_layout(tmp_path, name):
    entry, meta = MANIFEST[name], DATASETS.get(name)
    assert entry["source"] == {"kind": "hf", "id": f"clip-benchmark/{name}", "revision": "main"}
    retrieval = "retrieval" in entry["tasks"]  # with captioning where the captions are English
    assert entry["main_metric"] in (RETRIEVAL_METRICS if retrieval else ZEROSHOT_METRICS)
    assert meta.availability(str(tmp_path)).startswith(f"not downloaded: hf://clip-benchmark/{name}@main")
    F.write(tmp_path / name, "retrieval" if retrieval else "classification", n=5, per_shard=2)
    assert meta.availability(str(tmp_path)) is None  # a local copy under the data root
    task = TaskKind.RETRIEVAL if retrieval else TaskKind.ZEROSHOT
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        data = meta.load(DatasetRequest("test", task, data_root=str(tmp_path)))
    assert len(data.images) == 5 and data.info["location"] == str(tmp_path / name) and data.info["shards"] == 3
    if retrieval:
        assert data.caption_to_image == [0, 0, 1, 2, 2, 2, 3, 3, 4]
    else:
        assert data.labels == [0, 1, 2, 0, 1] and data.classnames == F.CLASSNAMES
    counts = [str(w.message) for w in seen]  # the fixture is not the real split: a count warning, nothing else
    assert all("per datasets_manifest.yaml" in m for m in counts)
    assert ("images" in entry["splits"]["test"]) == bool(counts)


@pytest.mark.parametrize("name, kind", [("wds_vtab-pets", "classification"), ("wds_flickr30k", "retrieval")])
def test_records_are_ranked_by_the_manifest_main_metric(tmp_path, name, kind):
    F.write(tmp_path / name, kind, n=6, per_shard=4)
    spec, = expand("tiny-clip-synth", name, None, "test", RunOptions(data_root=str(tmp_path)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fixture's counts differ from the manifest's
        record = run_one(spec, tmp_path / "results").record
    assert record.main_metric == MANIFEST[name]["main_metric"] and record.main_metric in record.metrics
    if kind == "retrieval":
        assert record.metrics["mean_R@1"] == pytest.approx((record.metrics["t2i_R@1"] + record.metrics["i2t_R@1"]) / 2)


def test_main_metric_and_language_are_checked_on_load():
    from harness.datasets import FORMATS
    from harness.datasets.manifest import ManifestError, parse_manifest
    from harness.datasets.resources import resource

    entry = ("schema_version: 1\ndatasets:\n  mine:\n    tasks: [zeroshot]\n    format: wds\n"
             "    source: {kind: local}\n    default_split: test\n    splits: {test: {}}\n"
             "    license: CC0\n    citation: me\n")
    (spec,) = parse_manifest(entry + "    main_metric: balanced_acc\n    language: [de, fr]\n", "m.yaml", FORMATS, resource)
    assert spec.main_metric == "balanced_acc" and spec.languages == ("de", "fr")
    assert parse_manifest(entry, "m.yaml", FORMATS, resource)[0].languages == ("en",)
    with pytest.raises(ManifestError, match=r"^m.yaml:11: datasets.mine.main_metric: unknown metric 'recall'"):
        parse_manifest(entry + "    main_metric: recall\n", "m.yaml", FORMATS, resource)
