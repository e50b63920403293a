"""The ``wds`` format on fixtures in CLIP_benchmark's published layout: classification,
retrieval and multi-label shards, a user's folder as ``wds:DIR``, remote locations through
the download cache (offline: one line), and every fault naming its shard and key."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pytest

from harness.datasets import DATASETS, DatasetRequest, TaskKind
from harness.datasets.base import DatasetError
from harness.datasets.wds_read import read_split
from harness.datasets.wds_source import Location, absent_marker
from tests import wds_fixture as F

pytest.importorskip("webdataset", reason="webdataset is a base dependency (pyproject); run make setup")
RET, ZS = TaskKind.RETRIEVAL, TaskKind.ZEROSHOT


def load(name: str, task: TaskKind, split: str = "test", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean fixture loads without a single warning
        return DATASETS.get(name).load(DatasetRequest(split, task, **kw))


def member_bytes(tar: Path, name: str) -> bytes:
    import tarfile

    with tarfile.open(tar) as tf:
        return tf.extractfile(name).read()


def test_classification_shards_read_as_clip_benchmark_writes_them(tmp_path):
    root = F.write(tmp_path / "pets", "classification", n=7, per_shard=3)
    data = load(f"wds:{root}", ZS)
    assert data.labels == [0, 1, 2, 0, 1, 2, 0] and data.classnames == F.CLASSNAMES
    assert data.templates == ["a photo of a {}.", "a drawing of a {}."]  # {c} read as {}
    assert [data.images.key(i) for i in (0, 3, 6)] == ["test/0.tar:s0000000.jpg", "test/1.tar:s0000003.jpg",
                                                        "test/2.tar:s0000006.jpg"]
    assert data.info["shards"] == 3 and data.name == f"wds:{root}"
    for i in range(7):  # the image bytes, by offset, are the member's; the digest is their sha256
        shard, member = data.images.key(i).split(":")
        blob = member_bytes(root / shard, member)
        assert data.images.read_bytes(i) == blob == F.image(i)[1]
        assert data.images.digests[i] == hashlib.sha256(blob).hexdigest()
    assert data.images.load(1).size == (8, 8) and data.images.load(2).mode == "RGB"  # png, webp decode
    meta = DATASETS.get(f"wds:{root}")
    assert meta.splits == ("test",) and meta.tasks == (ZS,)


def test_retrieval_shards_give_captions_one_a_line(tmp_path):
    root = F.write(tmp_path / "caps", "retrieval", n=4, per_shard=2)
    data = load(f"wds:{root}", RET)
    assert data.captions == [*F.CAPTIONS[0], *F.CAPTIONS[1], *F.CAPTIONS[2], *F.CAPTIONS[0]]
    assert data.caption_to_image == [0, 0, 1, 2, 2, 2, 3, 3]
    with pytest.raises(DatasetError, match="a retrieval dataset .* has no zeroshot view"):
        DATASETS.get(f"wds:{root}").loader(DatasetRequest("test", ZS))


def test_multilabel_shards_are_read_and_checked(tmp_path):
    root = F.write(tmp_path / "voc", "multilabel", n=4, per_shard=4)
    split = read_split(Location.of(str(root)), "test", "multilabel", n_classes=3)
    assert split.labels == [[1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]]
    with pytest.raises(DatasetError, match=r"multi-label dataset .*mAP is not implemented"):
        load(f"wds:{root}", ZS)
    with pytest.raises(DatasetError, match=r"test/0.tar: key s0000000: .npy must be a 0/1 vector of 5 classes"):
        read_split(Location.of(str(root)), "test", "multilabel", n_classes=5)


def test_identity_is_shard_and_key_and_image_content(tmp_path):
    a = load(f"wds:{F.write(tmp_path / 'a', 'classification')}", ZS)
    b = load(f"wds:{F.write(tmp_path / 'b', 'classification')}", ZS)
    assert a.fingerprint == b.fingerprint  # same shards elsewhere: the same data
    from harness.datasets.identity import images_digest

    assert images_digest(a.images) == images_digest(b.images)
    samples = [{"jpg": F.image(0)[1], "cls": 1}, {"png": F.image(1)[1], "cls": 1}]
    c = load(f"wds:{F.write(tmp_path / 'c', 'classification', samples=samples)}", ZS)
    samples[1]["png"] = F.png_bytes((1, 2, 3))
    d = load(f"wds:{F.write(tmp_path / 'd', 'classification', samples=samples)}", ZS)
    assert c.fingerprint == d.fingerprint and images_digest(c.images) != images_digest(d.images)


@pytest.mark.parametrize("fault, message", [
    ("cut", r"test/1.tar: shard cut short after key s0000003 \(no end-of-archive blocks; \d+ bytes\)"),
    ("cut_member", r"test/1.tar: shard cut short (at key s0000004|after key s0000003) \(no end-of-archive"),
    ("no_image", r"test/0.tar: key s0000001: sample has no image \(webp/png/jpg/jpeg\); it has: cls"),
    ("cls_range", r"test/0.tar: key s0000002: .cls 7 is out of range: classnames.txt has 3 classes"),
    ("cls_text", r"test/0.tar: key s0000000: .cls is not an integer"),
    ("missing_shard", r"test/2.tar not found"),
    ("nshards", r"nshards.txt: should hold the number of shards"),
])
def test_faults_name_the_shard_and_key(tmp_path, fault, message):
    samples = [{"jpg": F.image(i)[1], "cls": i % 3} for i in range(6)]
    if fault == "no_image":
        samples[1] = {"cls": 1}
    if fault == "cls_range":
        samples[2]["cls"] = 7
    if fault == "cls_text":
        samples[0]["cls"] = "cat"
    root = F.write(tmp_path / "d", "classification", per_shard=3, samples=samples)
    shard = root / "test" / "1.tar"
    if fault in ("cut", "cut_member"):
        import tarfile

        with tarfile.open(shard) as tf:
            where = {m.name: m for m in tf.getmembers()}
        # at a member boundary (tar readers see a clean end; the end blocks are gone), or inside an image
        cut = where["s0000004.cls"].offset if fault == "cut" else where["s0000004.jpg"].offset_data + 20
        shard.write_bytes(shard.read_bytes()[:cut])
    if fault == "missing_shard":
        (root / "test" / "nshards.txt").write_text("3\n")
    if fault == "nshards":
        (root / "test" / "nshards.txt").write_text("two\n")
    with pytest.raises(DatasetError, match=message):
        load(f"wds:{root}", ZS)


def test_adhoc_folder_errors_are_one_line(tmp_path):
    with pytest.raises(DatasetError, match=r"is not a folder"):
        DATASETS.get(f"wds:{tmp_path / 'nowhere'}")
    with pytest.raises(DatasetError, match=r"no <split>/nshards.txt in"):
        DATASETS.get(f"wds:{tmp_path}")


def test_remote_location_offline_is_one_line_then_reads_the_cache(tmp_path, monkeypatch):
    from harness.cli.main import main

    url = "hf://clip-benchmark/wds_fixture_pets"
    args = ["data", "describe", f"wds:{url}", "--split", "test"]
    assert main(args) == 2
    loc = Location.of(url)
    assert loc.base_url == "https://huggingface.co/datasets/clip-benchmark/wds_fixture_pets/resolve/main"
    assert str(loc.cache).startswith(str(Path(__import__("os").environ["VLBENCH_CACHE"])))
    # a machine with network fetched it once into the same cache: offline now, it is read from there
    F.write(loc.cache, "classification", n=4)
    absent_marker(loc.cache / "dataset_type.txt").touch()  # upstream has none: the fetch noted its 404
    data = load(f"wds:{url}", ZS)
    assert data.labels == [0, 1, 2, 0] and data.info["cache"] == str(loc.cache)


def test_remote_offline_message(tmp_path, capsys):
    from harness.cli.main import main

    assert main(["data", "describe", "wds:https://example.org/wds/pets"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "https://example.org/wds/pets/dataset_type.txt: not in the download cache" in err[0]
    assert "example.org cannot be reached" in err[0]


def test_shard_listings_are_kept_while_the_shard_is_unchanged(tmp_path, monkeypatch):
    from harness.datasets import wds_index, wds_read

    monkeypatch.setattr(wds_index, "RACY_NS", 0)  # the fixture was written just now (ctime cannot be set back)
    root = F.write(tmp_path / "d", "classification", n=4, per_shard=2)
    first = load(f"wds:{root}", ZS)
    scanned = []
    real = wds_read.scan_shard
    monkeypatch.setattr(wds_read, "scan_shard", lambda *a: scanned.append(a[1]) or real(*a))
    again = load(f"wds:{root}", ZS)
    assert scanned == [] and again.fingerprint == first.fingerprint and again.images.digests == first.images.digests
    samples = [{"jpg": F.image(i)[1], "cls": 2} for i in range(4)]  # shard 1 rewritten: read again
    F.write(tmp_path / "d2", "classification", per_shard=2, samples=samples)
    (root / "test" / "1.tar").write_bytes((tmp_path / "d2" / "test" / "1.tar").read_bytes())
    changed = load(f"wds:{root}", ZS)
    assert [s.rsplit("/", 1)[-1] for s in scanned] == ["1.tar"] and changed.labels == [0, 1, 2, 2]
