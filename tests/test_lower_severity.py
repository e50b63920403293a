"""Issue 22, item 6: the lower-severity findings, each with its reproduction."""

from __future__ import annotations

import doctest
import errno
import json
import warnings

import pytest

from harness.cli.main import main
from harness.datasets import DATASETS, DatasetRequest, TaskKind
from harness.datasets.base import DatasetError
from tests.test_caption_selection import _aro, _sugarcrepe, _winoground
from tests.test_flickr8k import make_copy

CS = TaskKind.CAPTION_SELECTION
F30K = "tests/data/clip_benchmark/flickr30k_openai_ViT-B-32_en_zeroshot_retrieval.json"


def load(name, split, root, task=CS, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = DATASETS.get(name).load(DatasetRequest(split, task, data_root=str(root), **kw))
    return data, "\n".join(str(w.message) for w in caught)


def run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


# ------------------------------------------------------------------ loaders

def test_aro_box_entirely_outside_its_image_is_refused(tmp_path):
    root = _aro(tmp_path, with_order=False)
    path = root / "aro" / "visual_genome_relation.json"
    rows = json.loads(path.read_text())
    rows[1].update(bbox_x=40, bbox_y=0)  # image 1.jpg is 32 x 16: the crop would be empty
    path.write_text(json.dumps(rows))
    with pytest.raises(DatasetError, match=r"1\.jpg: ARO box \(x, y, w, h\) = \(40, 0, 16, 16\) lies outside the "
                                           r"32x16 image"):
        load("aro", "vg_relation", root)
    rows[1].update(bbox_x=24)  # partly outside: cut at the edge, as ARO's own crop does
    path.write_text(json.dumps(rows))
    data, _ = load("aro", "vg_relation", root)
    assert data.images.load(data.items[1].images[0]).size == (16, 16)


def test_a_repeated_winoground_line_counts_once(tmp_path):
    root = _winoground(tmp_path)
    path = root / "winoground" / "data" / "examples.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[0]]) + "\n")
    data, warned = load("winoground", "test", root)
    assert len(data.items) == 3 and data.info["dropped_repeated_entries"] == 1
    assert f"winoground: {path}: 1 repeated group skipped, the first kept (line 4 (as line 1))" in warned
    with pytest.raises(DatasetError, match=r"1 repeated group skipped.*--strict"):
        load("winoground", "test", root, strict=True)


def test_a_repeated_sugarcrepe_key_keeps_the_first_and_says_so(tmp_path):
    root = _sugarcrepe(tmp_path)
    part = root / "sugarcrepe" / "add_att.json"
    text = part.read_text()
    entries = json.loads(text)
    clash = json.dumps({"filename": entries["0"]["filename"], "caption": "a clash", "negative_caption": "a foil"})
    part.write_text(text[:-1] + f', "0": {clash}}}')
    data, warned = load("sugarcrepe", "add_att", root)
    assert len(data.items) == 4 and data.items[0].captions[0] == entries["0"]["caption"]  # the first, not the last
    assert f"{part}: 1 repeated key skipped, the first kept ('0')" in warned
    assert data.info["dropped_repeated_entries"] == 1
    with pytest.raises(DatasetError, match=r"repeated key.*--strict"):
        load("sugarcrepe", "add_att", root, strict=True)


def test_nul_bytes_in_captions_fail_naming_where(tmp_path):
    root = make_copy(tmp_path / "flickr8k")
    tokens = root / "text" / "Flickr8k.token.txt"
    lines = tokens.read_bytes().split(b"\n")
    lines[2] = lines[2] + b"\x00\x00junk"
    tokens.write_bytes(b"\n".join(lines))
    for strict in (False, True):
        with pytest.raises(DatasetError, match=rf"{tokens}: line 3: the caption holds a NUL byte"):
            load("flickr8k", "test", tmp_path, TaskKind.RETRIEVAL, strict=strict)
    wino = _winoground(tmp_path / "w")
    path = wino / "winoground" / "data" / "examples.jsonl"
    path.write_text(path.read_text().replace("a red mug next", "a red\\u0000 mug next", 1))
    with pytest.raises(DatasetError, match=r"examples\.jsonl: line 1: caption_0: holds a NUL byte"):
        load("winoground", "test", wino)


def test_nul_in_a_caption_that_reaches_assembly_fails_too():
    from harness.datasets.assemble import refuse_nul_captions

    refuse_nul_captions("d", "test", [("a.jpg", ["fine"])], {})
    with pytest.raises(DatasetError, match=r"^d/test: ann\.json: image b\.jpg: caption 1 holds a NUL byte"):
        refuse_nul_captions("d", "test", [("a.jpg", ["fine"]), ("b.jpg", ["ok", "bad\x00"])],
                            {"annotation_file": "ann.json"})


# ------------------------------------------------------------------ command line

def test_negative_max_retries_is_refused_before_ray_starts(monkeypatch, capsys, tmp_path):
    import harness.run.executors as X

    monkeypatch.setattr(X, "_ray", lambda: pytest.fail("Ray was started"))
    code, out, err = run(capsys, "sweep", "--suite", "default", "--executor", "ray", "--max-retries", "-5",
                         "--results", str(tmp_path))
    assert code == 2 and out == ""
    assert err == "vlbench: error: --max-retries must be 0 or more (attempts after a failed run), got -5"
    code, _, err = run(capsys, "sweep", "--suite", "default", "--executor", "ray", "--cpus-per-run", "-1",
                       "--results", str(tmp_path))
    assert code == 2 and err == "vlbench: error: --cpus-per-run must be 0 or more, got -1.0"


def test_export_does_not_overwrite_without_force(capsys, tmp_path):
    results = tmp_path / "results"
    assert main(["import", "clip-benchmark", F30K, "--results", str(results)]) == 0
    out = tmp_path / "board.csv"
    out.write_text("precious\n")
    code, _, err = run(capsys, "export", "--results", str(results), "--format", "csv", "--out", str(out))
    assert code == 2 and err == f"vlbench: error: --out {out} exists; pass --force to replace it, or give another path"
    assert out.read_text() == "precious\n"
    code, _, _ = run(capsys, "export", "--results", str(results), "--format", "csv", "--out", str(out), "--force")
    assert code == 0 and "t2i_R@5" in out.read_text().splitlines()[0]


class _FullDisk:
    """A standard output redirected to a full disk: every write fails with ENOSPC and no path."""

    def __init__(self):
        self.buffer = self

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self):
        pass


def test_export_to_a_full_stdout_names_standard_output(monkeypatch, capsys, tmp_path):
    import sys

    results = tmp_path / "results"
    assert main(["import", "clip-benchmark", F30K, "--results", str(results)]) == 0
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdout", _FullDisk())
    code = main(["export", "--results", str(results), "--format", "jsonl"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == ("vlbench: error: cannot write the export to standard output (No space left on device); "
                   "give --out FILE on a disk with room")


def test_language_that_is_not_a_code_is_refused(tmp_path, capsys):
    raw = json.loads(open(F30K).read())
    for bad in (["zh"], 5, "../x", ""):
        src = tmp_path / "x.json"
        src.write_text(json.dumps({**raw, "language": bad}))
        code, _, err = run(capsys, "import", "clip-benchmark", str(src), "--results", str(tmp_path / "res"))
        assert code == 2 and err == f"vlbench: error: {src}: language must be a language code such as 'en' or 'zh', got {bad!r}"
    assert not (tmp_path / "res").exists()
    src.write_text(json.dumps({**raw, "language": "zh"}))
    assert main(["import", "clip-benchmark", str(src), "--results", str(tmp_path / "res")]) == 0
    assert [p.parent.parent.name for p in (tmp_path / "res").rglob("*.json")] == ["flickr30k-zh"]


# ------------------------------------------------------------------ linear probe --shots

def test_shots_that_select_all_of_train_are_refused_and_short_classes_named():
    from harness.core.errors import UserError
    from harness.datasets.base import ClassificationData
    from harness.datasets.views import ProbeData
    from harness.tasks import linear_probe as LP
    from harness.tasks.encode import EncodeOptions
    from tests.test_linear_probe import FeatureTable, IdImages, blobs

    assert doctest.testmod(LP).failed == 0
    x, y = blobs(n=30, k=3)
    train = ClassificationData("toy", "train", IdImages(range(24)), y[:24].tolist(), ["a", "b", "c"], ["{}"], "t")
    test = ClassificationData("toy", "test", IdImages(range(24, 30)), y[24:].tolist(), ["a", "b", "c"], ["{}"], "e")
    with pytest.raises(UserError, match=r"^--shots 8: no class of toy's train split has more than 8 images"):
        LP.evaluate(FeatureTable(x), ProbeData(train, test), EncodeOptions(batch_size=8), shots=8)
    with pytest.warns(UserWarning, match=r"--shots 5: 1 class\(es\) of toy's train split have fewer images and use "
                                         r"all they have \(class index 1\)"):
        LP.check_shots([0] * 10 + [1] * 3 + [2] * 11, 5, "toy")
