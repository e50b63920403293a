"""datasets_manifest.yaml and the dataset registry must tell the same story."""

import hashlib

import pytest
import yaml

from harness.datasets import DATASETS, DatasetRequest, TaskKind, synthetic
from tests.conftest import FLICKR8K, ROOT, needs_flickr8k

MANIFEST = yaml.safe_load((ROOT / "datasets_manifest.yaml").read_text())["datasets"]


def test_every_registered_dataset_is_in_the_manifest_and_agrees():
    assert set(MANIFEST) == set(DATASETS.names())
    for name, entry in MANIFEST.items():
        meta = DATASETS.get(name)
        assert tuple(entry["tasks"]) == tuple(t.value for t in meta.tasks), name
        assert set(entry["splits"]) == set(meta.splits), name
        assert entry["default_split"] == meta.default_split, name
        assert entry["license"] == meta.license, name


@pytest.mark.parametrize("split", ["val", "test"])
def test_synthetic_counts_match_manifest(split):
    want = MANIFEST["synthetic"]["splits"][split]
    ret = synthetic.load(DatasetRequest(split, TaskKind.RETRIEVAL))
    cls = synthetic.load(DatasetRequest(split, TaskKind.ZEROSHOT))
    assert (len(ret.images), len(ret.captions), len(cls.images)) == \
        (want["images"], want["captions"], want["classification_images"])
    assert len(cls.classnames) == MANIFEST["synthetic"]["classes"]
    assert synthetic.SPLIT_SIZES["train"] == MANIFEST["synthetic"]["splits"]["train"]["images"]


@needs_flickr8k()
def test_flickr8k_annotation_checksums():
    entry = MANIFEST["flickr8k"]
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    assert sha(FLICKR8K / "text" / "Flickr8k.token.txt") == entry["annotation_sha256"]["Flickr8k.token.txt"]
    for split, fname in (("train", "trainImages"), ("dev", "devImages"), ("test", "testImages")):
        path = FLICKR8K / "text" / f"Flickr_8k.{fname}.txt"
        assert sha(path) == entry["splits"][split]["split_file_sha256"]
        assert len(path.read_text().split()) == entry["splits"][split]["images"]
