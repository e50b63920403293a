"""Bad data, each case with its defined behaviour: convert, skip-with-count, or fail naming
the file; --strict turns every skip into a failure. Also subsets and fingerprints."""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import pytest

import harness.datasets
from harness.datasets import DATASETS, FORMATS, build_registry
from harness.datasets.base import DatasetError, DatasetRequest, TaskKind
from harness.datasets.images import ImageDecodeError, file_problem, load_rgb
from harness.datasets.manifest import parse_manifest
from harness.datasets.resources import resource
from tests.imagefiles import corrupt_middle_jpeg, jpeg_bytes, truncated_jpeg, write_jpeg
from tests.test_flickr8k import make_copy

ZS = TaskKind.ZEROSHOT


# ------------------------------------------------------------------ image modes -> RGB

def save(im, path: Path, fmt: str) -> Path:
    im.save(path, fmt)
    return path


def test_cmyk_and_greyscale_convert_to_rgb(tmp_path: Path) -> None:
    from PIL import Image

    cmyk = load_rgb(save(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", "JPEG"))
    r, g, b = cmyk.getpixel((1, 1))
    assert cmyk.mode == "RGB" and r > 240 and g < 15 and b < 15  # pure red survives the conversion
    grey = load_rgb(save(Image.new("L", (4, 4), 77), tmp_path / "grey.png", "PNG"))
    assert grey.mode == "RGB" and grey.getpixel((0, 0)) == (77, 77, 77)
    deep = Image.new("I;16", (4, 4))
    deep.putpixel((0, 0), 65535)
    deep16 = load_rgb(save(deep, tmp_path / "deep.png", "PNG"))
    assert deep16.getpixel((0, 0)) == (255, 255, 255) and deep16.getpixel((1, 1)) == (0, 0, 0)


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    from PIL import Image

    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 255, 255))
    out = load_rgb(save(rgba, tmp_path / "a.png", "PNG"))
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 0)) == (0, 0, 255)
    half = load_rgb(save(Image.new("LA", (1, 1), (0, 128)), tmp_path / "la.png", "PNG"))
    assert half.getpixel((0, 0)) == (127, 127, 127)
    pal = Image.new("P", (2, 1), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0
    out = load_rgb(save(pal, tmp_path / "p.png", "PNG"))
    assert out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((1, 0)) == (255, 0, 0)


# ------------------------------------------------------------------ cheap file check

def test_file_problem_names_each_kind(tmp_path: Path) -> None:
    from PIL import Image

    assert file_problem(write_jpeg(tmp_path / "ok.jpg")) is None
    (tmp_path / "tail.jpg").write_bytes(jpeg_bytes() + b"\x00" * 100)  # padding after EOI is fine
    assert file_problem(tmp_path / "tail.jpg") is None
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert file_problem(tmp_path / "empty.jpg") == "empty file"
    assert file_problem(truncated_jpeg(tmp_path / "cut.jpg")) == "truncated JPEG (no end-of-image marker)"
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(buf, "PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:-20])
    assert file_problem(tmp_path / "cut.png") == "truncated PNG (no IEND chunk)"
    (tmp_path / "text.jpg").write_text("hello")
    assert file_problem(tmp_path / "text.jpg").startswith("not an image file")
    assert file_problem(tmp_path / "absent.jpg").startswith("cannot be read")


def test_decode_failure_names_the_file(tmp_path: Path) -> None:
    path = corrupt_middle_jpeg(tmp_path / "bad.jpg")
    assert file_problem(path) is None  # only a full decode notices
    with pytest.raises(ImageDecodeError, match=r"bad\.jpg: cannot decode image"):
        load_rgb(path)


def test_decode_failure_during_encoding_fails_the_run(tmp_path: Path) -> None:
    """Never silently dropped: the encoding loop raises, naming the file."""
    import torch

    from harness.core.measure import Stage
    from harness.datasets.images import ImageSet
    from harness.tasks.encode import EncodeOptions, encode_images

    class Model:
        embed_dim = 3

        def image_transform(self):
            return lambda im: torch.tensor(im.getpixel((0, 0)), dtype=torch.float32)

        def encode_images(self, pixels):
            return pixels

    images = ImageSet([write_jpeg(tmp_path / "good.jpg"), corrupt_middle_jpeg(tmp_path / "bad.jpg")])
    with Stage("image_encode", "cpu", 0) as stage, pytest.raises(ImageDecodeError, match=r"bad\.jpg"):
        encode_images(Model(), images, EncodeOptions(batch_size=2, num_workers=0), stage)


def test_cli_shows_a_worker_error_as_its_last_line() -> None:
    from harness.cli.main import _one_line

    wrapped = DatasetError("Caught ImageDecodeError in DataLoader worker process 0.\nOriginal Traceback (most "
                           "recent call last):\n  File \"x.py\", line 1\nharness.datasets.images.ImageDecodeError: "
                           "/d/bad.jpg: cannot decode image (broken data stream)\n")
    assert _one_line(wrapped) == "/d/bad.jpg: cannot decode image (broken data stream)"
    assert _one_line(DatasetError("plain")) == "plain"


# ------------------------------------------------------------------ policy in the loaders

def req(split: str, root: Path, **kw) -> DatasetRequest:
    return DatasetRequest(split, TaskKind.RETRIEVAL, data_root=str(root), **kw)


def quiet(name: str, request: DatasetRequest):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DATASETS.get(name).load(request)


def test_bad_image_in_train_is_dropped_counted_and_named(tmp_path: Path) -> None:
    make_copy(tmp_path / "flickr8k")
    truncated_jpeg(tmp_path / "flickr8k" / "Flicker8k_Dataset" / "t2.jpg")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        d = DATASETS.get("flickr8k").load(req("train", tmp_path))
    text = "\n".join(str(w.message) for w in rec)
    assert "1 image file(s) are unreadable (t2.jpg: truncated JPEG" in text
    assert [p.name for p in d.images.paths] == ["t3.jpg", "t1.jpg", "t4.jpg"]
    assert d.info["dropped_bad_images"] == 1 and d.info["bad_images"] == ["t2.jpg: truncated JPEG (no end-of-image marker)"]
    assert len(d.captions) == 15


def test_bad_image_in_an_evaluation_split_fails(tmp_path: Path) -> None:
    make_copy(tmp_path / "flickr8k")
    (tmp_path / "flickr8k" / "Flicker8k_Dataset" / "d2.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"flickr8k/dev: 1 image file\(s\) are unreadable \(d2.jpg: empty file\)"):
        quiet("flickr8k", req("dev", tmp_path))


F8K_MANIFEST = """\
schema_version: 1
datasets:
  f8k:
    tasks: [retrieval]
    format: flickr8k
    source: {kind: local, folder: flickr8k}
    default_split: test
    splits: {train: {}, dev: {}, test: {}}
    license: research only
    citation: Hodosh et al. 2013
"""


@pytest.mark.parametrize("breakage, what", [
    ("stray", "stray line"),
    ("missing_train_image", "images are missing"),
    ("repeated_split_entry", "repeated image name"),
    ("no_caption", "have no caption"),
    ("bad_image", "unreadable"),
])
def test_strict_turns_each_skip_into_a_failure(tmp_path: Path, breakage: str, what: str) -> None:
    root = tmp_path / "flickr8k"
    make_copy(root)
    token = root / "text" / "Flickr8k.token.txt"
    lines = [ln for ln in token.read_bytes().split(b"\n") if ln]
    clean = [ln for ln in lines if ln.split(b"#")[0] in {n.encode() for n in
                                                        ("t1.jpg", "t2.jpg", "t3.jpg", "t4.jpg")}]
    clean = list(dict.fromkeys(ln for ln in clean if b"duplicate" not in ln and not ln.startswith(b"t2.jpg#5")))
    token.write_bytes(b"\n".join(clean) + b"\n")
    for name in ("Flickr_8k.devImages.txt", "Flickr_8k.testImages.txt"):
        (root / "text" / name).write_text("")
    with pytest.raises(DatasetError, match=r"Flickr8k.token.txt differs from the release the manifest pins"):
        quiet("flickr8k", req("train", tmp_path, strict=True))  # not the official token file
    reg = build_registry(parse_manifest(F8K_MANIFEST, "f.yaml", FORMATS, resource))  # no checksums pinned
    f8k = lambda request: reg.get("f8k").load(request)
    f8k(req("train", tmp_path, strict=True))  # the clean copy passes --strict
    if breakage == "stray":
        token.write_bytes(token.read_bytes() + b"2258277193_586949ec62.jpg.1#0\tstray\n")
    elif breakage == "missing_train_image":
        (root / "Flicker8k_Dataset" / "t4.jpg").unlink()
    elif breakage == "repeated_split_entry":
        split = root / "text" / "Flickr_8k.trainImages.txt"
        split.write_text(split.read_text() + "t1.jpg\n")
    elif breakage == "no_caption":
        token.write_bytes(b"\n".join(ln for ln in clean if not ln.startswith(b"t3.jpg")) + b"\n")
    else:
        truncated_jpeg(root / "Flicker8k_Dataset" / "t1.jpg")
    with pytest.warns(UserWarning, match=what):  # without --strict: a warning, the load goes on
        f8k(req("train", tmp_path))
    with pytest.raises(DatasetError) as e:
        f8k(req("train", tmp_path, strict=True))
    assert what in str(e.value) and "--strict" in str(e.value)


def test_strict_is_recorded_in_info(tmp_path: Path) -> None:
    data = DATASETS.get("synthetic").load(DatasetRequest("val", ZS, strict=True))
    assert data.info["strict"] is True


def test_karpathy_duplicate_image_entries_are_skipped(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    for n in ("COCO_val2014_000000000001.jpg", "COCO_val2014_000000000002.jpg"):
        write_jpeg(root / "val2014" / n)
    entry = lambda n, caps: {"filepath": "val2014", "filename": n, "split": "test",
                             "sentences": [{"raw": c} for c in caps]}
    images = [entry("COCO_val2014_000000000001.jpg", ["a", "b"]), entry("COCO_val2014_000000000002.jpg", ["c"]),
              entry("COCO_val2014_000000000001.jpg", ["again"])]
    (root / "dataset_coco.json").write_text(json.dumps({"images": images}))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        d = DATASETS.get("coco").load(req("test", tmp_path))
    assert d.captions == ["a", "b", "c"] and d.caption_to_image == [0, 0, 1]
    assert d.info["dropped_duplicate_entries"] == 1
    assert any("1 repeated image entr(ies) skipped, first kept" in str(w.message) and "entr(ies) 2" in str(w.message)
               for w in rec)


# ------------------------------------------------------------------ subsets and fingerprints

SUBSET_MANIFEST = """\
schema_version: 1
datasets:
  shapes:
    tasks: [zeroshot]
    format: imagefolder
    source: {kind: local, folder: shapes}
    default_split: test
    splits:
      test: {images: 6}
    subsets:
      shapes-3: {split: test, limit: 3, seed: 7}
    classes: {names: folders, templates: ["a {}."]}
    license: CC0
    citation: none
"""


@pytest.fixture
def shapes(tmp_path: Path):
    for cls in ("circle", "square"):
        for i in range(3):
            write_jpeg(tmp_path / "shapes" / "test" / cls / f"{i}.jpg", (i * 50, 0, 0))
    return build_registry(parse_manifest(SUBSET_MANIFEST, "s.yaml", FORMATS, resource)), tmp_path


def test_manifest_subset_is_seeded_recorded_and_stable(shapes) -> None:
    reg, root = shapes
    full = reg.get("shapes").load(DatasetRequest("test", ZS, data_root=str(root)))
    a = reg.get("shapes-3").load(DatasetRequest("test", ZS, data_root=str(root)))
    b = reg.get("shapes-3").load(DatasetRequest("test", ZS, data_root=str(root)))
    assert len(a.images) == 3 and a.images.paths == b.images.paths and a.fingerprint == b.fingerprint
    assert a.fingerprint != full.fingerprint
    assert a.info["subset"] == {"limit": 3, "seed": 7, "name": "shapes-3"}
    assert "count_mismatch" not in a.info  # subsets are not held to the full split's counts
    inner = reg.get("shapes-3").load(DatasetRequest("test", ZS, data_root=str(root), limit=2, seed=1))
    assert set(inner.images.paths) < set(a.images.paths)
    assert inner.info["subset"] == {"limit": 2, "seed": 1, "within": {"limit": 3, "seed": 7, "name": "shapes-3"}}
    assert reg.get("shapes-3").splits == ("test",)
    with pytest.raises(DatasetError, match="no split 'train'"):
        reg.get("shapes-3").load(DatasetRequest("train", ZS, data_root=str(root)))


def test_fingerprint_changes_whenever_the_selection_does(shapes) -> None:
    reg, root = shapes
    load = lambda **kw: reg.get("shapes").load(DatasetRequest("test", ZS, data_root=str(root), **kw))
    base = load().fingerprint
    assert load().fingerprint == base
    picks = {load(limit=3, seed=s).fingerprint for s in range(6)}
    paths = {tuple(load(limit=3, seed=s).images.paths) for s in range(6)}
    assert len(picks) == len(paths) > 1 and base not in picks
    (root / "shapes" / "test" / "square" / "2.jpg").rename(root / "shapes" / "test" / "square" / "9.jpg")
    assert load().fingerprint != base  # same counts, another image
    (root / "shapes" / "test" / "square" / "9.jpg").rename(root / "shapes" / "test" / "circle" / "9.jpg")
    assert len({load().fingerprint, base}) == 2


def test_registered_subsets() -> None:
    coco1k = DATASETS.get("coco-1k")
    assert coco1k.splits == ("test",) and coco1k.spec.name == "coco"
    assert "1000 images of coco/test, seed 0" == coco1k.description


# ------------------------------------------------------------------ the command line

def run_cli(capsys, *argv):
    from harness.cli.main import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_describe_and_strict(capsys, tmp_path: Path) -> None:
    make_copy(tmp_path / "flickr8k")
    code, out, _ = run_cli(capsys, "data", "describe", "flickr8k", "--split", "dev", "--data-root", str(tmp_path))
    assert code == 0 and "retrieval.images: 2" in out and "retrieval.captions: 10" in out
    assert "retrieval.dropped_stray_lines: 2" in out and "retrieval.fingerprint:" in out
    code, out, _ = run_cli(capsys, "data", "describe", "flickr8k", "--split", "dev", "--data-root", str(tmp_path),
                           "--strict")
    assert code == 1 and "usable: False" in out and "--strict" in out
    corrupt_middle_jpeg(tmp_path / "flickr8k" / "Flicker8k_Dataset" / "d1.jpg")
    code, out, _ = run_cli(capsys, "data", "describe", "flickr8k", "--split", "dev", "--data-root", str(tmp_path),
                           "--decode")
    assert code == 1 and "undecodable_images: 1" in out and "d1.jpg: cannot decode image" in out


def test_cli_list_datasets_says_why_not(capsys, tmp_path: Path) -> None:
    make_copy(tmp_path / "flickr8k")
    code, out, _ = run_cli(capsys, "list", "datasets", "--data-root", str(tmp_path))
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert code == 0 and rows["flickr8k"].rstrip().endswith("yes") and rows["synthetic"].rstrip().endswith("yes")
    assert "no: cifar10: cifar-10-batches-py/ not found" in rows["cifar10"]
    assert "no: no dataset_coco.json or per-split JSON under" in rows["coco"]


def test_strict_flag_reaches_the_dataset_request(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from harness.cli.commands import _run_options
    from harness.cli.main import build_parser
    from harness.run import runner

    args = build_parser().parse_args(["run", "--model", "tiny-clip-synth", "--strict"])
    opts = _run_options(args)
    assert opts.strict is True
    seen = []

    class Stop(Exception):
        pass

    meta = DATASETS.get("synthetic")

    def fake_load(request):
        seen.append(request)
        raise Stop

    class FakeMeta:
        name, default_split, tasks = meta.name, meta.default_split, meta.tasks
        load = staticmethod(fake_load)

    monkeypatch.setattr(harness.datasets.DATASETS, "get", lambda name: FakeMeta)
    with pytest.raises(Stop):
        runner.run_one(runner.RunSpec("tiny-clip-synth", "synthetic", "retrieval", "val", opts), tmp_path)
    assert seen[0].strict is True and seen[0].split == "val"
