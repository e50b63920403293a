"""Flickr8k text files as releases ship them: byte-order marks, captions of unknown images,
and the release's own known defects (declared by checksum, so ``--strict`` fails only on
new ones)."""

from __future__ import annotations

import hashlib
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from harness.datasets import DATASETS, flickr8k
from harness.datasets.base import DatasetError
from harness.datasets.manifest import KnownDefect, ManifestError
from tests.conftest import FLICKR8K
from tests.test_flickr8k import SPLITS, STRAY, cap, load_recording, make_copy, req
from tests.test_manifest import GOOD, parse


def flickr_spec():
    from harness.datasets import FORMATS
    from harness.datasets.manifest import MANIFEST_PATH, load_manifest
    from harness.datasets.resources import resource

    return next(s for s in load_manifest(MANIFEST_PATH, FORMATS, resource) if s.name == "flickr8k")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bom_at_the_start_of_a_split_file_hides_no_image(tmp_path):
    root = make_copy(tmp_path / "flickr8k")
    split = root / "text" / "Flickr_8k.devImages.txt"
    split.write_bytes(b"\xef\xbb\xbf" + split.read_bytes())
    d, text = load_recording(req("dev", tmp_path))
    assert [p.name for p in d.images.paths] == ["d1.jpg", "d2.jpg"]
    assert "\ufeff" not in text and "missing" not in text


def test_bom_in_a_karpathy_id_list_is_ignored(tmp_path):
    from harness.datasets import karpathy
    from tests.test_karpathy import make_f30k, recording
    from tests.test_karpathy import req as kreq

    root = make_f30k(tmp_path / "flickr30k", token=True)
    (root / "dataset_flickr30k.json").unlink()
    (root / "flickr30k_karpathy_test.txt").write_bytes(b"\xef\xbb\xbf1003.jpg\n1001.jpg\n")
    d, text = recording(karpathy.load_flickr30k, kreq("test", tmp_path))
    assert [p.name for p in d.images.paths] == ["1003.jpg", "1001.jpg"] and "\ufeff" not in text


def clean_copy(tmp_path: Path, strays: int = 0) -> Path:
    """The fixture copy with a token file holding only good lines (and ``strays`` stray ones
    after the first image's captions): the token file of ``make_copy`` has every fault."""
    root = make_copy(tmp_path / "flickr8k")
    names = [n for split in SPLITS.values() for n in split] + ["u1.jpg"]
    lines = [f"{n}#{i}\t{cap(n, i)}" for n in names for i in range(5)]
    lines[5:5] = [f"{STRAY}#{i}\tpeople waiting for the subway" for i in range(strays)]
    (root / "text" / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    return root


def test_caption_of_an_unknown_image_warns_and_is_counted(tmp_path):
    root = clean_copy(tmp_path)
    token = root / "text" / "Flickr8k.token.txt"
    lines = token.read_bytes().splitlines()
    token.write_bytes(b"\n".join(lines + [b"zz_typo.jpg#0\ta caption of no image", b"zz_typo.jpg#1\tanother"]) + b"\n")
    n = len(lines)
    d, text = load_recording(req("dev", tmp_path))
    assert f"2 caption(s) of image(s) in no split file and not in the image folder skipped (zz_typo.jpg) in {token}, " \
           f"line(s) {n + 1}, {n + 2}" in text
    assert d.info["dropped_unknown_image_captions"] == 2 and d.info["unknown_images"] == ["zz_typo.jpg"]
    assert d.info["images_in_no_split"] == 1  # u1.jpg: on disk, in no split: normal, not unknown
    with pytest.raises(DatasetError, match="zz_typo.jpg"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flickr8k.load(req("dev", tmp_path, strict=True))


def _release_spec(token: Path, lines: list[int]):
    """The real manifest entry, with this fixture's token file pinned and ``lines`` declared stray."""
    base = flickr_spec()
    digest = sha(token)
    return replace(base, annotation_sha256={**base.annotation_sha256, token.name: digest},
                   known_defects=(KnownDefect(token.name, digest, "stray", frozenset(lines), "fixture"),))


def test_strict_passes_on_declared_defects_and_fails_on_new_ones(tmp_path):
    root = clean_copy(tmp_path, strays=2)
    token = root / "text" / "Flickr8k.token.txt"
    clean = token.read_bytes().splitlines()
    strays = [i for i, ln in enumerate(clean, 1) if ln.startswith(STRAY.encode())]
    assert len(strays) == 2
    spec = _release_spec(token, strays)
    d, text = _load(spec, tmp_path, strict=True)  # declared: reported, not an error
    assert d.info["known_defects"] == {"stray": 2} and "a known defect of this release" in text
    # one more stray line: the file's bytes change, so nothing is declared for it any more
    token.write_bytes(token.read_bytes() + f"{STRAY}#2\ta third\n".encode())
    with pytest.raises(DatasetError, match=r"3 stray line.*--strict"):
        _load(spec, tmp_path, strict=True)
    # the same bytes, but the manifest declares only one of the two lines: still a failure
    token.write_bytes(b"\n".join(clean) + b"\n")
    with pytest.raises(DatasetError, match="2 stray line"):
        _load(_release_spec(token, strays[:1]), tmp_path, strict=True)


def _load(spec, root: Path, strict: bool):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        data = flickr8k.load(req("dev", root, strict=strict), spec)
    return data, "\n".join(str(w.message) for w in rec)


def test_known_defects_schema_errors_name_line_and_key():
    good = GOOD.replace("    citation: me", "    citation: me\n    known_defects:\n"
                        f"      - {{file: a.txt, sha256: {'ab' * 32}, kind: stray, lines: [3], note: x}}")
    (spec,) = parse(good)
    assert spec.defects_of("a.txt", "ab" * 32) == {"stray": frozenset({3})} and spec.defects_of("a.txt", "cd" * 32) == {}
    for old, new, what in [("kind: stray", "kind: odd", "unknown defect kind 'odd'"),
                           ("lines: [3]", "lines: [0]", "line numbers (>= 1)"),
                           ("sha256: " + "ab" * 32, "sha256: abc", "64 hex"),
                           (", note: x", "", "missing required key 'note'")]:
        with pytest.raises(ManifestError, match=r"m.yaml:1[45]: datasets.mine.known_defects.0") as e:
            parse(good.replace(old, new))
        assert what in str(e.value)


# --- the real development copy ------------------------------------------------------

REAL_TOKEN = FLICKR8K / "text" / "Flickr8k.token.txt"


@pytest.mark.skipif(not REAL_TOKEN.is_file(), reason=f"real Flickr8k development copy not found at {FLICKR8K}")
def test_strict_passes_on_the_official_release(tmp_path):
    spec = flickr_spec()
    texts = {p.name: p for p in (FLICKR8K / "text").iterdir()}
    differs = [n for n, want in spec.annotation_sha256.items() if n in texts and sha(texts[n]) != want]
    if differs:
        pytest.skip(f"this copy's {differs} differ from the official release's checksums")
    d = load_quiet(DATASETS.get("flickr8k"), req("dev", FLICKR8K.parent, strict=True))
    assert len(d.images) == 1000 and d.info["known_defects"] == {"stray": 5} and d.info["dropped_stray_lines"] == 5
    assert "dropped_unknown_image_captions" not in d.info  # the release's 91 unsplit images are known names
    # the same file with one new defect is no longer the release: strict names it
    copy = tmp_path / "flickr8k"
    (copy / "text").mkdir(parents=True)
    for name, path in texts.items():
        shutil.copy(path, copy / "text" / name)
    (copy / "Flicker8k_Dataset").symlink_to(FLICKR8K / "Flicker8k_Dataset")
    with (copy / "text" / REAL_TOKEN.name).open("ab") as f:
        f.write(b"zz_not_flickr.jpg#0\tan extra caption\n")
    with pytest.raises(DatasetError, match=r"Flickr8k.token.txt.*--strict"):
        load_quiet(DATASETS.get("flickr8k"), req("dev", tmp_path, strict=True))


def load_quiet(meta, request):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return meta.load(request)


def test_manifest_declares_the_official_stray_lines():
    spec = flickr_spec()
    defects = spec.defects_of("Flickr8k.token.txt", spec.annotation_sha256["Flickr8k.token.txt"])
    assert defects == {"stray": frozenset(range(6731, 6736))}
