"""Flickr8k loader: tiny fixtures in the official layout, plus the real development copy."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from harness.datasets import flickr8k
from harness.datasets.base import DatasetError, DatasetRequest, TaskKind
from tests.conftest import FLICKR8K

SPLITS = {"train": ["t3.jpg", "t1.jpg", "t2.jpg", "t4.jpg"], "dev": ["d1.jpg", "d2.jpg"], "test": ["s1.jpg", "s2.jpg"]}
STRAY = "2258277193_586949ec62.jpg.1"


def cap(name: str, n: int) -> str:
    return f"{name[:-4]} caption {n}"


def token_lines() -> list[bytes]:
    """Token file lines (1-based line number = index + 1), with every kind of problem."""
    lines: list[bytes] = []
    for n in reversed(range(5)):                       # captions out of #n order
        lines.append(f"t1.jpg#{n}\t{cap('t1.jpg', n)}".encode())
    lines.append(b"t1.jpg#0\ta duplicate that must lose")   # line 6: duplicate
    lines.append(b"")                                       # line 7: blank
    lines.append(f"{STRAY}#0\tpeople waiting for the subway".encode())  # line 8: stray
    lines.append(f"{STRAY}#1\tthree people at a station".encode())      # line 9: stray
    lines.append(b"no tab on this line")                    # line 10: malformed
    lines.append(b"t2.jpg#5\t   ")                          # line 11: empty caption
    lines.append("d1.jpg#2\td1 caf\u00e9 2".encode("latin-1"))  # line 12: non-UTF-8
    for name in ["t2.jpg", "t3.jpg", "t4.jpg", "d1.jpg", "d2.jpg", "s1.jpg", "s2.jpg", "u1.jpg"]:
        for n in range(5):
            if (name, n) != ("d1.jpg", 2):
                lines.append(f"{name}#{n}\t{cap(name, n)}\r".encode())  # CRLF tolerated
    return lines


def make_copy(root: Path, *, text_dir: str = "text", missing: tuple[str, ...] = (), junk: bool = False) -> Path:
    from PIL import Image

    images = root / "Flicker8k_Dataset"
    images.mkdir(parents=True)
    for name in [n for names in SPLITS.values() for n in names] + ["u1.jpg"]:
        if name in missing:
            continue
        if junk:  # not a JPEG at all: proves load() never opens images
            (images / name).write_bytes(b"not an image")
        else:
            Image.new("RGB", (8, 8), (len(name) * 20 % 256, 0, 0)).save(images / name, "JPEG")
    text = root / text_dir if text_dir != "." else root
    text.mkdir(parents=True, exist_ok=True)
    (text / "Flickr8k.token.txt").write_bytes(b"\n".join(token_lines()) + b"\n")
    for split, names in SPLITS.items():
        (text / f"Flickr_8k.{split}Images.txt").write_text("\n".join(names) + "\n")
    return root


def req(split: str, root: Path | None, **kw) -> DatasetRequest:
    return DatasetRequest(split=split, task=TaskKind.RETRIEVAL, data_root=None if root is None else str(root), **kw)


def load_recording(request: DatasetRequest):
    """Load and return (data, all warning messages joined)."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        data = flickr8k.load(request)
    return data, "\n".join(str(w.message) for w in rec)


def load_quiet(request: DatasetRequest):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return flickr8k.load(request)


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    make_copy(tmp_path / "flickr8k")
    return tmp_path


def test_train_counts_order_and_mapping(data_root: Path) -> None:
    d, text = load_recording(req("train", data_root))
    assert d.name == "flickr8k" and d.split == "train"
    assert [p.name for p in d.images.paths] == SPLITS["train"]
    assert d.captions == [cap(name, n) for name in SPLITS["train"] for n in range(5)]
    assert d.caption_to_image == [i for i in range(4) for _ in range(5)]
    for c, i in zip(d.captions, d.caption_to_image):
        assert c.startswith(d.images.paths[i].stem + " ")
    info = d.info
    assert info["dropped_stray_lines"] == 2 and info["stray_names"] == [STRAY]
    assert info["dropped_malformed_lines"] == 2      # blank line 7 + no-tab line 10
    assert info["dropped_empty_captions"] == 1
    assert info["dropped_duplicate_captions"] == 1
    assert info["bad_encoding_lines"] == 1
    assert info["dropped_missing_images"] == 0
    assert info["images_in_no_split"] == 1          # u1.jpg: normal, no warning
    assert len(info["token_sha256"]) == 64
    token = str(data_root / "flickr8k" / "text" / "Flickr8k.token.txt")
    assert STRAY in text and "line(s) 8, 9" in text
    assert "2 blank or malformed" in text and "line(s) 7, 10" in text
    assert "non-UTF-8" in text and "line(s) 12" in text
    assert "empty caption" in text and "line(s) 11" in text
    assert "repeated" in text and "line(s) 6" in text
    assert token in text and "u1.jpg" not in text


def test_dev_keeps_undecodable_caption_replaced(data_root: Path) -> None:
    d = load_quiet(req("dev", data_root))
    assert len(d.images) == 2 and len(d.captions) == 10
    assert d.captions[2] == "d1 caf\ufffd 2" and d.caption_to_image[2] == 0
    assert load_quiet(req("val", data_root)).captions == d.captions  # alias


def test_files_that_are_not_images_fail_an_evaluation_split(tmp_path: Path) -> None:
    make_copy(tmp_path / "flickr8k", junk=True)
    with pytest.raises(DatasetError) as e:
        load_quiet(req("test", tmp_path))
    msg = str(e.value)
    assert "2 image file(s) are unreadable" in msg and "s1.jpg: not an image file" in msg
    assert "test split must be complete" in msg


def test_real_jpegs_load_lazily(data_root: Path) -> None:
    im = load_quiet(req("dev", data_root)).images.load(1)
    assert im.size == (8, 8) and im.mode == "RGB"


@pytest.mark.parametrize("split", ["dev", "test"])
def test_missing_images_fail_for_evaluation_splits(tmp_path: Path, split: str) -> None:
    make_copy(tmp_path / "flickr8k", missing=(SPLITS[split][1],))
    with pytest.raises(DatasetError) as e:
        load_quiet(req(split, tmp_path))
    msg = str(e.value)
    assert "1 of 2 images are missing" in msg and SPLITS[split][1] in msg
    assert str(tmp_path / "flickr8k" / "Flicker8k_Dataset") in msg


def test_missing_images_dropped_and_counted_for_train(tmp_path: Path) -> None:
    make_copy(tmp_path / "flickr8k", missing=("t1.jpg",))
    d, text = load_recording(req("train", tmp_path))
    assert "1 of 4 images are missing" in text and "t1.jpg" in text
    assert [p.name for p in d.images.paths] == ["t3.jpg", "t2.jpg", "t4.jpg"]
    assert d.info["dropped_missing_images"] == 1
    assert len(d.captions) == 15 and not any(c.startswith("t1 ") for c in d.captions)
    assert d.caption_to_image == [i for i in range(3) for _ in range(5)]


def test_train_with_every_image_missing_fails(tmp_path: Path) -> None:
    make_copy(tmp_path / "flickr8k", missing=tuple(SPLITS["train"]))
    with pytest.raises(DatasetError, match="4 of 4 images are missing"):
        load_quiet(req("train", tmp_path))


def test_limit_is_deterministic_and_recorded(data_root: Path) -> None:
    full = load_quiet(req("train", data_root))
    a = load_quiet(req("train", data_root, limit=2, seed=3))
    b = load_quiet(req("train", data_root, limit=2, seed=3))
    assert [p.name for p in a.images.paths] == [p.name for p in b.images.paths]
    assert a.captions == b.captions and a.fingerprint == b.fingerprint != full.fingerprint
    assert len(a.images) == 2 and len(a.captions) == 10
    assert a.info["subset"] == {"limit": 2, "seed": 3}
    for c, i in zip(a.captions, a.caption_to_image):
        assert c.startswith(a.images.paths[i].stem + " ")
    seeds = {tuple(p.name for p in load_quiet(req("train", data_root, limit=2, seed=s)).images.paths) for s in range(8)}
    assert len(seeds) > 1
    with pytest.raises(DatasetError):
        load_quiet(req("train", data_root, limit=0))


def test_fingerprint_follows_token_file(data_root: Path) -> None:
    before = load_quiet(req("dev", data_root)).fingerprint
    assert load_quiet(req("dev", data_root)).fingerprint == before
    token = data_root / "flickr8k" / "text" / "Flickr8k.token.txt"
    token.write_bytes(token.read_bytes() + b"d2.jpg#9\tone more\n")
    assert load_quiet(req("dev", data_root)).fingerprint != before


@pytest.mark.parametrize("text_dir", ["text", "Flickr8k_text", "."])
def test_text_files_in_any_usual_place(tmp_path: Path, text_dir: str) -> None:
    make_copy(tmp_path / "flickr8k", text_dir=text_dir)
    assert len(load_quiet(req("dev", tmp_path)).captions) == 10


def test_data_root_may_be_the_copy_itself(tmp_path: Path) -> None:
    make_copy(tmp_path / "my_f8k")
    assert len(load_quiet(req("dev", tmp_path / "my_f8k")).images) == 2


def test_env_var_is_used_without_data_root(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLBENCH_DATA", str(data_root))
    monkeypatch.setattr(flickr8k, "DEV_COPY", data_root / "nowhere")
    d = load_quiet(req("dev", None))
    assert d.info["root"] == str(data_root / "flickr8k")


def test_not_found_names_every_place_and_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DatasetError) as e:
        load_quiet(req("dev", tmp_path))
    msg = str(e.value)
    for root in (tmp_path / "flickr8k", tmp_path):
        for place in ("text/Flickr8k.token.txt", "Flickr8k_text/Flickr8k.token.txt", "Flickr8k.token.txt"):
            assert str(root / place) in msg
    assert "--data-root" in msg and "VLBENCH_DATA" in msg
    monkeypatch.delenv("VLBENCH_DATA", raising=False)
    monkeypatch.setattr(flickr8k, "DEV_COPY", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="VLBENCH_DATA"):
        load_quiet(req("dev", None))


def test_missing_image_folder_and_split_file(data_root: Path) -> None:
    from harness.datasets import DATASETS

    meta, root = DATASETS.get("flickr8k"), data_root / "flickr8k"
    (root / "text" / "Flickr_8k.testImages.txt").rename(root / "testImages.bak")
    with pytest.raises(DatasetError, match=r"Flickr_8k\.testImages\.txt not found"):
        load_quiet(req("test", data_root))
    assert meta.availability(str(data_root)) == f"flickr8k: Flickr_8k.testImages.txt not found under {root}"
    (root / "testImages.bak").rename(root / "text" / "Flickr_8k.testImages.txt")
    (root / "Flicker8k_Dataset").rename(root / "elsewhere")
    with pytest.raises(DatasetError, match="image folder not found") as e:
        load_quiet(req("dev", data_root))
    assert e.value.hint == flickr8k.HINT and str(e.value) == f"{e.value.reason}\n{flickr8k.HINT}"
    assert meta.availability(str(data_root)) == f"flickr8k: image folder not found under {root}"


def test_bad_split_and_task(data_root: Path) -> None:
    with pytest.raises(DatasetError, match="no split 'extra'"):
        load_quiet(req("extra", data_root))
    with pytest.raises(DatasetError, match="retrieval"):
        flickr8k.load(DatasetRequest("dev", TaskKind.ZEROSHOT, data_root=str(data_root)))


def test_registered_meta_and_describe(data_root: Path) -> None:
    from harness.datasets import DATASETS
    from harness.datasets.describe import describe

    m = DATASETS.get("flickr8k")
    assert m.splits == ("train", "dev", "test") and m.default_split == "test"
    assert m.tasks == (TaskKind.RETRIEVAL, TaskKind.CAPTIONING) and not m.offline and "Hodosh" in m.citation
    assert len(load_quiet_meta(m, req("dev", data_root)).images) == 2
    assert m.availability(str(data_root)) is None
    (data_root / "flickr8k" / "Flicker8k_Dataset" / "s2.jpg").unlink()
    report = describe(m, "test", str(data_root))
    assert report["usable"] is False and "1 of 2 images are missing" in report["error"] and "s2.jpg" in report["error"]
    report = describe(m, "dev", str(data_root))
    assert report["usable"] is True and report["retrieval.images"] == 2 and report["retrieval.captions"] == 10
    assert report["retrieval.dropped_stray_lines"] == 2
    assert report["retrieval.sha256_mismatch"] == ["Flickr8k.token.txt", "Flickr_8k.devImages.txt"]
    assert any("differs from the release" in str(v) for k, v in report.items() if ".warning[" in k)
    assert m.availability(str(data_root / "elsewhere")).startswith("no Flickr8k.token.txt under")


def load_quiet_meta(meta, request):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return meta.load(request)


# --- the real development copy (official text files, 3000 train + 1000 dev images) ---

REAL = FLICKR8K
needs_real = pytest.mark.skipif(
    not (REAL / "text" / "Flickr8k.token.txt").is_file(),
    reason=f"real Flickr8k development copy not found at {REAL} (see the README of the shared data folder)",
)


@needs_real
def test_real_train() -> None:
    d, text = load_recording(req("train", REAL))
    assert STRAY in text and "3000 of 6000 images are missing" in text
    assert len(d.images) == 3000 and len(d.captions) == 15000
    assert d.info["dropped_missing_images"] == 3000 and d.info["dropped_stray_lines"] == 5
    assert d.caption_to_image[:10] == [0] * 5 + [1] * 5


@needs_real
def test_real_dev() -> None:
    d = load_quiet(req("dev", REAL))
    assert len(d.images) == 1000 and len(d.captions) == 5000
    assert d.info["dropped_missing_images"] == 0
    assert all(p.is_file() for p in d.images.paths[:20])


@needs_real
def test_real_test_is_missing() -> None:
    with pytest.raises(DatasetError, match="1000 of 1000 images are missing"):
        load_quiet(req("test", REAL))
