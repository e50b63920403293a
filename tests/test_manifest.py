"""datasets_manifest.yaml: the registry is built from it, and it is validated on load."""

import hashlib
import textwrap

import pytest
import yaml

from harness.datasets import DATASETS, FORMATS, DatasetRequest, TaskKind, synthetic
from harness.datasets.base import with_implied
from harness.datasets.manifest import ManifestError, parse_manifest
from harness.datasets.resources import resource, templates
from tests.conftest import FLICKR8K, ROOT, needs_flickr8k

MANIFEST = yaml.safe_load((ROOT / "datasets_manifest.yaml").read_text())["datasets"]


def test_registry_is_the_manifest_plus_its_subsets():
    subsets = {s: (name, v) for name, e in MANIFEST.items() for s, v in (e.get("subsets") or {}).items()}
    assert set(DATASETS.names()) == set(MANIFEST) | set(subsets)
    for name, entry in MANIFEST.items():
        meta = DATASETS.get(name)
        # plus the views they imply (image_text_classification: the train + eval image_text_probe)
        assert with_implied(tuple(TaskKind(t) for t in entry["tasks"])) == meta.tasks, name
        assert tuple(entry["splits"]) == meta.splits and entry["default_split"] == meta.default_split, name
        assert entry["license"] == meta.license and entry["citation"] == meta.citation, name
        assert meta.spec.format == entry["format"] and meta.offline == (entry["source"]["kind"] == "generated")
    for sub, (parent, v) in subsets.items():
        meta = DATASETS.get(sub)
        assert meta.splits == (v["split"],) and meta.spec.name == parent
    assert DATASETS.get("synth").name == "synthetic" and DATASETS.get("imagenet").name == "imagenet1k"


@pytest.mark.parametrize("split", ["val", "test"])
def test_synthetic_counts_match_manifest(split):
    want = MANIFEST["synthetic"]["splits"][split]
    ret = synthetic.load(DatasetRequest(split, TaskKind.RETRIEVAL))
    cls = synthetic.load(DatasetRequest(split, TaskKind.ZEROSHOT))
    assert (len(ret.images), len(ret.captions), len(cls.images)) == \
        (want["images"], want["captions"], want["classification_images"])
    assert synthetic.SPLIT_SIZES["train"] == MANIFEST["synthetic"]["splits"]["train"]["images"]


def test_registered_load_checks_counts_without_warning_when_they_match():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a count mismatch would warn
        data = DATASETS.get("synthetic").load(DatasetRequest("val", TaskKind.ZEROSHOT))
    assert "count_mismatch" not in data.info and len(data.classnames) == 24


@needs_flickr8k()
def test_flickr8k_annotation_checksums():
    entry = MANIFEST["flickr8k"]
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    for name, want in entry["annotation_sha256"].items():
        assert sha(FLICKR8K / "text" / name) == want, name
    for split, fname in (("train", "trainImages"), ("dev", "devImages"), ("test", "testImages")):
        path = FLICKR8K / "text" / f"Flickr_8k.{fname}.txt"
        assert len(path.read_text().split()) == entry["splits"][split]["images"]


def test_curated_class_names_and_templates():
    names = resource("classnames")["imagenet1k"]
    # the curated list keeps two known homonym pairs of ImageNet (missile/projectile, sunglass/sunglasses)
    assert len(names) == 1000 and len(set(names)) == 998
    assert [i for i, n in enumerate(names) if n in ("missile", "sunglasses")] == [657, 744, 836, 837]
    assert names[0] == "tench" and names[134] == "crane bird" and names[517] == "construction crane"
    imagenet = templates("imagenet1k")
    assert len(imagenet) == 80 and all("{}" in t and "{c}" not in t for t in imagenet)
    assert imagenet[0] == "a bad photo of a {}." and len(templates("cifar10")) == len(templates("cifar100")) == 18


GOOD = """\
schema_version: 1
datasets:
  mine:
    tasks: [zeroshot]
    format: imagefolder
    source: {kind: local, folder: mine}
    default_split: val
    splits:
      val: {images: 4}
    classes: {names: folders, templates: ["a photo of a {}."]}
    license: CC0
    citation: me
"""


def parse(text: str):
    return parse_manifest(textwrap.dedent(text), "m.yaml", FORMATS, resource)


def test_a_valid_entry_parses():
    (spec,) = parse(GOOD)
    assert spec.name == "mine" and spec.format == "imagefolder" and spec.splits["val"].images == 4
    assert spec.classes["templates"] == ["a photo of a {}."] and spec.origin == "m.yaml:3"


@pytest.mark.parametrize("old, new, line, key, what", [
    ("    format: imagefolder", "    format: imgfolder", 5, "datasets.mine.format", "unknown format 'imgfolder'"),
    ("      val: {images: 4}", "      val: {images: four}", 9, "datasets.mine.splits.val.images", "whole number"),
    ("      val: {images: 4}", "      val: {imagez: 4}", 9, "datasets.mine.splits.val.imagez", "unknown key"),
    ("    default_split: val", "    default_split: test", 7, "datasets.mine.default_split", "not one of the splits"),
    ("    tasks: [zeroshot]", "    tasks: [retrieval]", 4, "datasets.mine.tasks", "has no retrieval view"),
    ("    source: {kind: local, folder: mine}", "    source: {kind: ftp}", 6, "datasets.mine.source.kind",
     "unknown source kind"),
    ("    source: {kind: local, folder: mine}", "    source: {kind: hf, id: a/b}", 6, "datasets.mine.source",
     "missing required key 'revision'"),
    ("    license: CC0\n", "", 3, "datasets.mine", "missing required key 'license'"),
    ("    citation: me", "    citation: me\n    license: again", 13, "datasets.mine.license", "duplicate key"),
    ('    classes: {names: folders, templates: ["a photo of a {}."]}',
     "    classes: {names: folders, templates: [a photo]}", 10, "datasets.mine.classes.templates", "'{}'"),
    ('    classes: {names: folders, templates: ["a photo of a {}."]}',
     "    classes: {names: folders, templates: no_such_set}", 10, "datasets.mine.classes.templates",
     "no template set"),
    ('    classes: {names: folders, templates: ["a photo of a {}."]}\n', "", 3, "datasets.mine", "needs 'classes'"),
    ("    citation: me", "    citation: me\n    subsets: {mine-2: {split: test, limit: 2}}", 13,
     "datasets.mine.subsets.mine-2.split", "no split 'test'"),
    ("    citation: me", "    citation: me\n    subsets: {mine-2: {split: val, limit: 0}}", 13,
     "datasets.mine.subsets.mine-2.limit", ">= 1"),
    ("    citation: me", "    citation: me\n    annotation_sha256: {a.txt: abc}", 13,
     "datasets.mine.annotation_sha256.a.txt", "64 hex"),
    ("    citation: me", "    citation: me\n    options: {variant: 10}", 13, "datasets.mine.options.variant",
     "unknown key"),
    ("schema_version: 1", "schema_version: 2", 1, "schema_version", "reads schema_version 1"),
])
def test_schema_errors_name_file_line_and_key(old, new, line, key, what):
    assert old in GOOD
    with pytest.raises(ManifestError) as e:
        parse(GOOD.replace(old, new))
    msg = str(e.value)
    assert msg.startswith(f"m.yaml:{line}: {key}: "), msg
    assert what in msg, msg


def test_option_types_are_checked():
    cifar = GOOD.replace("format: imagefolder", "format: cifar").replace("    citation: me",
                                                                          "    citation: me\n    options: {variant: ten}")
    with pytest.raises(ManifestError, match=r"m.yaml:13: datasets.mine.options.variant: must be of type int"):
        parse(cifar)


def test_yaml_syntax_error_has_a_line():
    with pytest.raises(ManifestError, match=r"^m.yaml:5: not valid YAML"):
        parse("schema_version: 1\ndatasets:\n  a:\n    tasks: [x\n  b: 1\n")


def test_extra_manifest_from_the_environment(tmp_path, monkeypatch):
    from harness.datasets import load_registry

    extra = tmp_path / "more.yaml"
    extra.write_text(GOOD)
    monkeypatch.setenv("VLBENCH_MANIFEST", str(extra))
    reg = load_registry()
    assert "mine" in reg and "synthetic" in reg
    extra.write_text(GOOD.replace("  mine:", "  flickr8k:"))
    with pytest.raises(Exception, match=r"more.yaml:3: .*'flickr8k' is already registered"):
        load_registry()
