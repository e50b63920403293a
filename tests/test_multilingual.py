"""XM3600 and XTD10 in their published layouts: one split per language, the language in the
data and in the record, bad lines and missing captions reported, never silently dropped."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from harness.datasets import DATASETS, DatasetRequest, TaskKind
from harness.datasets.base import DatasetError
from harness.datasets.multilingual import xm3600_captions
from harness.run.runner import RunOptions, expand, run_one
from tests.imagefiles import write_jpeg

XM = {"0001a": {"en": ["A dog on a beach.", "A brown dog."], "de": ["Ein Hund am Strand."], "no": ["En hund."]},
      "0002b": {"en": ["Two red cars."], "de": ["Zwei rote Autos.", "Rote Autos."], "no": ["To biler."]},
      "0003c": {"en": ["A market stall."], "de": ["Ein Marktstand."], "no": []}}


def xm3600(root: Path, extra_lines: tuple[str, ...] = ()) -> Path:
    base = root / "xm3600"
    lines = []
    for i, (key, langs) in enumerate(XM.items()):
        write_jpeg(base / "images" / f"{key}.jpg", (40 * i, 90, 90))
        row = {"image/key": key, "image/locale": "en"}
        for lang, caps in langs.items():  # the release's fields: captions, tokenized, lowercased
            row[lang] = {"caption": caps, "caption/tokenized": [c.lower() for c in caps],
                         "caption/tokenized/lowercase": [c.lower() for c in caps]}
        lines.append(json.dumps(row, ensure_ascii=False))
    (base / "captions.jsonl").write_text("\n".join([*lines, *extra_lines]) + "\n", encoding="utf-8")
    return base


def xtd10(root: Path, jp_lines: int = 3) -> Path:
    base = root / "xtd10"
    names = ["COCO_train2014_000000000009.jpg", "COCO_train2014_000000000025.jpg", "COCO_train2014_000000000030.jpg"]
    for i, n in enumerate(names):
        write_jpeg(base / "images" / n, (90, 40 * i, 90))
    files = {"XTD10/test_image_names.txt": names,
             "XTD10/test_1kcaptions_en.txt": ["a plate of food", "a giraffe", "a vase of flowers"],
             "MIC/test_1kcaptions_de.txt": ["ein Teller", "eine Giraffe", "eine Vase"],
             "STAIR/test_1kcaptions_jp.txt": ["皿の上の料理", "キリン", "花瓶の花"][:jp_lines]}
    for rel, lines in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return base


def load(name: str, split: str, root: Path, **kw):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        data = DATASETS.get(name).load(DatasetRequest(split, TaskKind.RETRIEVAL, data_root=str(root), **kw))
    return data, [str(w.message) for w in seen if "per datasets_manifest.yaml" not in str(w.message)]


def test_xm3600_first_caption_per_language_split(tmp_path):
    xm3600(tmp_path)
    data, notes = load("xm3600", "de", tmp_path)
    assert data.captions == ["Ein Hund am Strand.", "Zwei rote Autos.", "Ein Marktstand."]
    assert data.caption_to_image == [0, 1, 2] and not notes
    assert data.info["language"] == "de" and [p.name for p in data.images.paths] == ["0001a.jpg", "0002b.jpg",
                                                                                     "0003c.jpg"]
    assert load("xm3600", "en", tmp_path)[0].fingerprint != data.fingerprint
    rows = xm3600_captions((tmp_path / "xm3600" / "captions.jsonl").read_text(), Path("c"), "de", "all", False)
    assert rows[1] == ("0002b", ["Zwei rote Autos.", "Rote Autos."])


def test_xm3600_missing_language_and_bad_lines_are_reported(tmp_path):
    xm3600(tmp_path, extra_lines=("{not json", json.dumps({"no key": 1})))
    data, notes = load("xm3600", "no", tmp_path)
    assert data.captions == ["En hund.", "To biler."]  # 0003c has no Norwegian caption
    assert any("2 malformed line(s) skipped" in n and "line(s) [4, 5]" in n for n in notes)
    assert any("1 image(s) have no caption and are dropped (e.g. 0003c.jpg)" in n for n in notes)
    with pytest.raises(DatasetError, match="malformed line"):
        load("xm3600", "no", tmp_path, strict=True)


def test_xtd10_release_folders_and_line_alignment(tmp_path):
    xtd10(tmp_path)
    de, notes = load("xtd10", "de", tmp_path)
    assert de.captions == ["ein Teller", "eine Giraffe", "eine Vase"] and not notes
    jp, _ = load("xtd10", "jp", tmp_path)
    assert jp.info["language"] == "ja" and jp.captions[1] == "キリン"
    with pytest.raises(DatasetError, match=r"test_1kcaptions_es.txt not found"):
        load("xtd10", "es", tmp_path)
    xtd10(tmp_path / "short", jp_lines=2)
    with pytest.raises(DatasetError, match=r"test_1kcaptions_jp.txt has 2 lines but .*test_image_names.txt lists 3"):
        load("xtd10", "jp", tmp_path / "short")


def test_records_carry_the_language(tmp_path):
    xtd10(tmp_path)
    spec, = expand("tiny-clip-synth", "xtd10", ["retrieval"], "jp", RunOptions(data_root=str(tmp_path)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the fixture's counts differ from the manifest's
        rec = run_one(spec, tmp_path / "results").record
    assert rec.dataset["language"] == "ja" and rec.dataset["split"] == "jp"
    spec, = expand("tiny-clip-synth", "synthetic", ["zeroshot"], "test", RunOptions(limit=24))
    assert run_one(spec, tmp_path / "results").record.dataset["language"] == "en"
    meta = DATASETS.get("xm3600")
    assert len(meta.splits) == 36 and meta.spec.languages[meta.splits.index("no")] == "no"
