"""Images are identified by content: a rewritten image is re-run and re-encoded (issue 13 item 1),
and the digest cache that keeps warm runs cheap is never trusted past a change to the file."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest

from harness.datasets import DATASETS, DatasetRequest
from harness.datasets.base import TaskKind
from harness.datasets.identity import images_digest
from harness.datasets.images import ArrayImages, ImageSet
from harness.results import identity as digests
from harness.run import runner

N_IMAGES = 12


def flickr8k_copy(root: Path, vlbench_cache: Path) -> list[str]:
    """A Flickr8k-layout copy (dev split) of synthetic scenes and their captions, on which
    tiny-clip-synth scores well, so a wrong image visibly changes recall. Returns the names."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synth = DATASETS.get("synthetic").load(DatasetRequest("val", TaskKind.RETRIEVAL, cache_dir=str(vlbench_cache),
                                                             limit=N_IMAGES))
    images, text = root / "flickr8k" / "Flicker8k_Dataset", root / "flickr8k" / "text"
    images.mkdir(parents=True)
    text.mkdir()
    names = [f"{i:04d}_scene.jpg" for i in range(len(synth.images))]
    for name, path in zip(names, synth.images.paths):
        shutil.copyfile(path, images / name)  # PNG bytes: the loader checks signatures, not suffixes
    lines = [f"{names[img]}#{n}\t{cap}" for n, (cap, img) in enumerate(zip(synth.captions, synth.caption_to_image))]
    (text / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for split in ("train", "test"):
        (text / f"Flickr_8k.{split}Images.txt").write_text("", encoding="utf-8")
    (text / "Flickr_8k.devImages.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return names


def spec(data_root: Path, **kw) -> runner.RunSpec:
    opts = runner.RunOptions(batch_size=8, num_workers=0, data_root=str(data_root), **kw)
    return runner.RunSpec("tiny-clip-synth", "flickr8k", "retrieval", "dev", opts)


def run(s: runner.RunSpec, results: Path, force: bool = False) -> runner.RunOutcome:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # manifest checksums/counts of the real Flickr8k differ, by design
        return runner.run_one(s, results, force=force)


def test_image_rewritten_under_its_name_is_rerun_with_fresh_embeddings(tmp_path, vlbench_cache, no_racy_window):
    """The issue's reproduction, offline: copy one dev image over another under the same name.
    Digests are remembered from the first run on (the warm case), and must not be trusted."""
    names = flickr8k_copy(tmp_path / "data", vlbench_cache)
    folder = tmp_path / "data" / "flickr8k" / "Flicker8k_Dataset"
    results = tmp_path / "results"
    first = run(spec(tmp_path / "data"), results)
    assert first.status == runner.RunStatus.DONE and not first.record.timings["image_encode"].cached
    again = run(spec(tmp_path / "data"), results)
    assert again.status == runner.RunStatus.SKIPPED  # unchanged: skipped as before

    shutil.copyfile(folder / names[1], folder / names[0])  # same name, another image's bytes
    fresh = run(spec(tmp_path / "data", use_cache=False), tmp_path / "fresh")
    assert fresh.record.metrics["rsum"] < first.record.metrics["rsum"]  # the change matters to the numbers

    rerun = run(spec(tmp_path / "data"), results)
    assert rerun.status == runner.RunStatus.DONE, "a changed image must not be 'skipped, already in the store'"
    assert rerun.record.run_key != first.record.run_key
    assert rerun.record.dataset["images_digest"] != first.record.dataset["images_digest"]
    assert rerun.record.metrics == fresh.record.metrics  # not the old image's cached embedding
    assert not rerun.record.timings["image_encode"].cached
    forced = run(spec(tmp_path / "data"), results, force=True)
    assert forced.record.metrics == fresh.record.metrics  # --force == --no-cache
    assert forced.record.timings["image_encode"].cached  # the new image's embeddings, cached by the rerun


def test_same_bytes_under_another_path_keep_the_run_key(tmp_path, vlbench_cache):
    """Content, not location: a moved copy of the data is the same run (and the same cache entry)."""
    flickr8k_copy(tmp_path / "a", vlbench_cache)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    results = tmp_path / "results"
    first = run(spec(tmp_path / "a"), results)
    moved = run(spec(tmp_path / "b"), results)
    assert moved.status == runner.RunStatus.SKIPPED and moved.path == first.path


def _counting(monkeypatch) -> list[str]:
    read: list[str] = []
    real = digests.hash_file

    def counted(path):
        read.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(digests, "hash_file", counted)
    return read


def test_warm_digests_read_no_file_and_persist_across_processes(tmp_path, monkeypatch, no_racy_window):
    files = [tmp_path / "img" / f"{i}.jpg" for i in range(5)]
    files[0].parent.mkdir()
    for i, f in enumerate(files):
        f.write_bytes(b"image %d" % i)
    cache = tmp_path / "cache"
    read = _counting(monkeypatch)
    cold = digests.file_digests(files, cache)
    assert cold == [digests.hashlib.sha256(b"image %d" % i).hexdigest() for i in range(5)] and len(read) == 5
    assert digests.file_digests(files, cache) == cold and len(read) == 5  # warm: stat only
    digests._TABLES.clear()  # a new process: the table is read back from disk
    assert digests.file_digests(files, cache) == cold and len(read) == 5
    tables = list((cache / "digests").iterdir())
    assert [p.suffix for p in tables if not p.name.startswith(".")] == [".json"]
    assert not [p for p in tables if p.name.endswith(".tmp")]  # written atomically


def test_changed_file_is_rehashed_even_with_size_and_mtime_put_back(tmp_path, no_racy_window):
    """``cp -p`` over a file keeps size and mtime; the ctime and the digest still change."""
    f = tmp_path / "img" / "a.jpg"
    f.parent.mkdir()
    f.write_bytes(b"AAAA")
    st = f.stat()
    cache = tmp_path / "cache"
    before = digests.file_digests([f], cache)[0]
    f.write_bytes(b"BBBB")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_size == st.st_size and f.stat().st_mtime_ns == st.st_mtime_ns
    after = digests.file_digests([f], cache)[0]
    assert after == digests.hashlib.sha256(b"BBBB").hexdigest() != before


def test_recently_written_files_are_hashed_every_time(tmp_path, monkeypatch):
    f = tmp_path / "new.jpg"
    f.write_bytes(b"fresh")
    read = _counting(monkeypatch)
    digests.file_digests([f], tmp_path / "cache")
    digests.file_digests([f], tmp_path / "cache")
    assert read == ["new.jpg", "new.jpg"]  # inside the racy window: not remembered


@pytest.mark.parametrize("content", ["{broken", '{"version": 1, "algorithm": "md5", "folder": "x", "files": {}}', "[]"])
def test_unreadable_or_foreign_table_is_ignored(tmp_path, no_racy_window, content):
    f = tmp_path / "img" / "a.jpg"
    f.parent.mkdir()
    f.write_bytes(b"pixels")
    cache = tmp_path / "cache"
    digests.file_digests([f], cache)
    (table,) = [p for p in (cache / "digests").glob("*.json")]
    table.write_text(content, encoding="utf-8")
    digests._TABLES.clear()
    assert digests.file_digests([f], cache) == [digests.hashlib.sha256(b"pixels").hexdigest()]
    assert json.loads(table.read_text())["files"]["a.jpg"][4] == digests.hashlib.sha256(b"pixels").hexdigest()


def test_images_digest_follows_content_and_order(tmp_path):
    import numpy as np

    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    ab, ba = images_digest(ImageSet([a, b])), images_digest(ImageSet([b, a]))
    assert ab != ba and ab == images_digest(ImageSet([a, b]))
    px = np.zeros((2, 4, 4, 3), np.uint8)
    before = images_digest(ArrayImages(px, ["x", "y"]))
    px[1, 0, 0, 0] = 1
    assert images_digest(ArrayImages(px, ["x", "y"])) != before


def test_vanished_image_is_an_error_naming_it(tmp_path):
    from harness.datasets.errors import DatasetError

    with pytest.raises(DatasetError, match="gone.jpg"):
        images_digest(ImageSet([tmp_path / "gone.jpg"]))


def test_embedding_cache_key_follows_image_content(tmp_path):
    """The cache entry of a split's images changes with their bytes, whatever the run key."""
    from harness.tasks.encode import _image_identity

    class Model:
        def image_transform(self):
            return "resize-64"

    f = tmp_path / "a.png"
    f.write_bytes(b"first")
    before = _image_identity(Model(), ImageSet([f]))
    f.write_bytes(b"other")
    assert _image_identity(Model(), ImageSet([f])) != before


def test_a_run_with_its_own_cache_dir_reads_and_writes_one_digest_table(tmp_path, vlbench_cache, monkeypatch,
                                                                        no_racy_window):
    """The run key and the embedding-cache key read the same table (the run's cache_dir), so a
    first run hashes each image once and leaves no second table in $VLBENCH_CACHE."""
    flickr8k_copy(tmp_path / "data", vlbench_cache)
    read = _counting(monkeypatch)
    own, shared = tmp_path / "own-cache", vlbench_cache / digests.FOLDER
    listing = lambda d: sorted(p.name for p in d.iterdir()) if d.exists() else []  # noqa: E731
    before = listing(shared)  # other tests' tables may be there already
    done = run(spec(tmp_path / "data", cache_dir=str(own)), tmp_path / "results")
    assert done.status == runner.RunStatus.DONE and not done.record.timings["image_encode"].cached
    assert sorted(read) == sorted(set(read)) and len(read) == N_IMAGES  # each image hashed once
    assert listing(own / digests.FOLDER)
    assert listing(shared) == before  # nothing written to a second table
