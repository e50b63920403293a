"""NoCaps in its published layout (nocaps.org v0.1 files, written here by the test): the loader,
its domain grouping, the test split's missing references, and the captioning task's per-domain
corpus scores (each domain scored as its own corpus, as the evaluation server does)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.datasets import DatasetRequest, resolve_dataset
from harness.datasets.base import DatasetError, TaskKind
from harness.metrics.captioning import evaluate_captions, group_key
from tests.imagefiles import write_jpeg

DOMAINS = ["in-domain", "near-domain", "out-domain", "near-domain", "in-domain", "out-domain", "near-domain"]
REFS = [["a man riding a horse on a beach", "a person rides a brown horse", "horse and rider by the sea"],
        ["a red fire truck parked on a street", "a fire engine on the road", "a red truck next to a building"],
        ["a jellyfish floating in blue water", "a pink jellyfish under the sea", "a jellyfish swimming"],
        ["a dog catching a frisbee in a park", "a dog jumps for a frisbee", "a brown dog playing in grass"],
        ["two people sitting on a bench", "a couple sits on a park bench", "people resting on a bench"],
        ["a lynx walking through snow", "a wild cat in the snow", "a lynx standing in a snowy forest"],
        ["a plate of pasta with tomato sauce", "spaghetti on a white plate", "a bowl of pasta on a table"]]
CANDIDATES = ["a man rides a horse on the beach", "a red truck on a street", "a fish in the water",
              "a dog playing with a frisbee", "people sitting on a bench", "a cat in the snow", "a plate of food"]


def image_entry(i: int, split: str, domain: str | None) -> dict:
    oid = f"{i:04x}ea2087020901"
    entry = {"id": i, "open_images_id": oid, "height": 8, "width": 8,
             "coco_url": f"https://s3.amazonaws.com/nocaps/{split}/{oid}.jpg", "file_name": f"{oid}.jpg",
             "license": 0, "date_captured": "2018-11-06 11:04:33"}
    if domain is not None:
        entry["domain"] = domain
    return entry


def write_nocaps(root: Path, domains=DOMAINS, split: str = "val", annotations: bool = True) -> Path:
    """The published file (images + annotations; the test file without them) and its images."""
    folder = root / "nocaps"
    images = [image_entry(i, split, d) for i, d in enumerate(domains)]
    obj = {"licenses": [], "info": {"url": "http://nocaps.org", "date_created": "2018/11/06", "version": "0.1",
                                    "description": f"nocaps {split} dataset", "contributor": "nocaps team",
                                    "year": 2018},
           "images": images}
    if annotations:
        obj["annotations"] = [{"image_id": i, "id": 10 * i + k, "caption": c}
                              for i in range(len(images)) for k, c in enumerate(REFS[i % len(REFS)])]
    name = "nocaps_val_4500_captions.json" if split == "val" else f"nocaps_{split}_image_info.json"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(obj), encoding="utf-8")
    for i, im in enumerate(images):
        write_jpeg(folder / split / im["file_name"], (20 * i, 100, 200))
    return folder


def load(root: Path, split: str = "val", limit: int | None = None, task=TaskKind.CAPTIONING):
    return resolve_dataset("nocaps").load(DatasetRequest(split, task, data_root=str(root), limit=limit))


def test_val_loads_images_references_and_domains(tmp_path):
    write_nocaps(tmp_path)
    with pytest.warns(UserWarning, match="expected 4500"):  # the fixture is not the full split
        data = load(tmp_path)
    assert [data.images.key(i) for i in range(len(data.images))] == [f"{i:04x}ea2087020901.jpg" for i in range(7)]
    assert data.image_groups == {"domain": DOMAINS} and data.image_ids == [str(i) for i in range(7)]
    assert data.info["domains"] == {"in-domain": 2, "near-domain": 3, "out-domain": 2}
    assert data.captions[:3] == REFS[0] and data.caption_to_image[:4] == [0, 0, 0, 1]


def test_a_limit_keeps_each_kept_image_s_domain(tmp_path):
    write_nocaps(tmp_path)
    data = load(tmp_path, limit=4)
    kept = [int(data.images.key(i)[:4], 16) for i in range(len(data.images))]
    assert len(kept) == 4 and data.image_groups["domain"] == [DOMAINS[i] for i in kept]


def test_the_test_split_has_no_references_and_says_so(tmp_path):
    write_nocaps(tmp_path, split="test", annotations=False)
    with pytest.raises(DatasetError, match=r"nocaps_test_image_info.json holds image information only .*"
                                           r"evaluation server \(EvalAI\).*use --split val \(4500 images"):
        load(tmp_path, split="test")


def test_val_image_info_without_captions_points_at_the_captions_file(tmp_path):
    folder = write_nocaps(tmp_path)
    obj = json.loads((folder / "nocaps_val_4500_captions.json").read_text())
    del obj["annotations"]
    (folder / "nocaps_val_4500_captions.json").unlink()
    (folder / "nocaps_val_image_info.json").write_text(json.dumps(obj))
    with pytest.raises(DatasetError, match="published later as nocaps_val_4500_captions.json"):
        load(tmp_path)


@pytest.mark.parametrize(("domain", "message"), [(None, r'images\[2\] \(id 2, 0002ea2087020901.jpg\) has no "domain"'),
                                                 ("far-domain", "has domain 'far-domain'")])
def test_a_missing_or_unknown_domain_names_the_image(tmp_path, domain, message):
    write_nocaps(tmp_path, domains=[*DOMAINS[:2], domain, *DOMAINS[3:]])
    with pytest.raises(DatasetError, match=message):
        load(tmp_path)


def test_missing_image_files_fail_the_val_split(tmp_path):
    folder = write_nocaps(tmp_path)
    (folder / "val" / "0003ea2087020901.jpg").unlink()
    with pytest.raises(DatasetError, match="1 of 7 images are missing"):
        load(tmp_path)


def test_captioning_reports_each_domain_as_its_own_corpus(tmp_path, monkeypatch):
    """captions:FILE through the runner on the fixture: overall keys equal evaluate_captions of
    every image, each ``<metric>_<domain>`` equals evaluate_captions of that domain's images alone
    (not the mean of the overall per-image scores: CIDEr-D's document frequencies differ), the
    sidecar keeps each domain's per-image scores, and METEOR (made unavailable here, so the test
    runs no Java) is undefined with its reason for every domain too."""
    import harness.tasks.captioning as captioning
    from harness.results.store import queries_path
    from harness.run.runner import RunOptions, RunSpec, run_one

    real = captioning.metric_missing
    monkeypatch.setattr(captioning, "metric_missing",
                        lambda m, tok="auto": "no Java in this test" if m in ("meteor", "spice") else real(m, tok))
    write_nocaps(tmp_path)
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in enumerate(CANDIDATES)]))
    opts = RunOptions(task_options=(("tokenizer", "python"),), data_root=str(tmp_path), cache_dir=str(tmp_path / "c"))
    with pytest.warns(UserWarning, match="expected 4500"):
        out = run_one(RunSpec(f"captions:{preds}", "nocaps", "captioning", split="val", options=opts),
                      tmp_path / "results")
    rec, keys = out.record, ("bleu1", "bleu4", "rouge_l", "cider")
    overall = evaluate_captions(CANDIDATES, REFS, keys, "python")
    for m in keys:
        assert rec.metrics[m] == pytest.approx(overall.corpus[m], abs=1e-9)
    sidecar = json.loads(queries_path(Path(out.path)).read_text())
    for domain in ("in-domain", "near-domain", "out-domain"):
        idx = [i for i, d in enumerate(DOMAINS) if d == domain]
        own = evaluate_captions([CANDIDATES[i] for i in idx], [REFS[i] for i in idx], keys, "python")
        for m in keys:
            assert rec.metrics[group_key(m, domain)] == pytest.approx(own.corpus[m], abs=1e-9)
        assert sidecar[group_key("cider", domain)] == pytest.approx(own.per_item["cider"], abs=1e-9)
        assert sidecar[group_key("bleu_stats", domain)] == own.bleu_stats and len(own.bleu_stats) == len(idx)
        assert rec.metrics[group_key("meteor", domain)] is None
        assert rec.options["undefined_metrics"][group_key("meteor", domain)] == "no Java in this test"
    near = [overall.per_item["cider"][i] for i, d in enumerate(DOMAINS) if d == "near-domain"]
    assert abs(rec.metrics["cider_near_domain"] - sum(near) / len(near)) > 1.0  # its own document frequencies
    assert rec.options["image_groups"] == {"domain": {"in-domain": 2, "near-domain": 3, "out-domain": 2}}
    assert "group_scoring" in rec.timings


def test_availability_finds_the_published_file_and_the_image_folder(tmp_path):
    """`vlbench list datasets` asks each format's probe: nocaps' looks for its own file names (not
    COCO's) and then the split's image folder."""
    meta = resolve_dataset("nocaps")
    assert "nocaps_val_4500_captions.json" in meta.availability(str(tmp_path))
    folder = write_nocaps(tmp_path)
    assert meta.availability(str(tmp_path)) is None
    shutil.rmtree(folder / "val")
    assert meta.availability(str(tmp_path)) == f"image folder {folder / 'val'} not found"
