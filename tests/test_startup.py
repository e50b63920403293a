"""Start-up work of a run (issue 15 item 4): digests hashed in the background are the same
digests, open_clip is not imported just to record its version, checkpoints load mmapped."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from harness.models import weights as W

ROOT = Path(__file__).resolve().parents[1]


def test_prefetched_digest_is_the_files_sha256_and_hashed_once(tmp_path, monkeypatch, no_racy_window):
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc" * 100_000)
    import os
    import time

    old = time.time() - 10
    os.utime(f, (old, old))  # not "racily clean": the digest may be cached
    calls = []
    from harness.results import identity

    real = identity.hash_file
    monkeypatch.setattr(identity, "hash_file", lambda p, *a: calls.append(p) or real(p, *a))
    W.prefetch_digest(f)
    assert W.file_digest(f) == hashlib.sha256(b"abc" * 100_000).hexdigest()
    assert W.file_digest(f) == hashlib.sha256(b"abc" * 100_000).hexdigest()
    assert len(calls) == 1


def test_a_file_changed_after_its_prefetch_is_hashed_again(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"one")
    W.prefetch_digest(f)
    f.write_bytes(b"two, longer")  # new size: a new (path, inode, size, mtime) key
    assert W.file_digest(f) == hashlib.sha256(b"two, longer").hexdigest()


def test_prefetch_of_a_missing_file_leaves_the_error_to_the_caller(tmp_path):
    W.prefetch_digest(tmp_path / "absent.pt")  # no thread, no exception
    with pytest.raises(FileNotFoundError):
        W.file_digest(tmp_path / "absent.pt")


def test_environment_records_open_clip_version_without_importing_it():
    code = ("import sys; from harness.core.environment import environment; e = environment('cpu'); "
            "print(e['open_clip'], 'open_clip' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}).stdout.split()
    from importlib import metadata

    assert out == [metadata.version("open_clip_torch"), "False"]


def test_zip_checkpoints_load_memory_mapped_and_others_as_before(tmp_path):
    import torch
    from torch.utils.serialization import config

    from harness.models.common import mmap_torch_load

    zipped, legacy = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save({"w": torch.arange(4.0)}, zipped)
    torch.save({"w": torch.arange(4.0)}, legacy, _use_new_zipfile_serialization=False)
    with mmap_torch_load(str(zipped)):
        assert config.load.mmap is True
        assert torch.equal(torch.load(zipped, weights_only=True)["w"], torch.arange(4.0))
    assert config.load.mmap is False
    with mmap_torch_load(str(legacy)):
        assert config.load.mmap is False
        assert torch.equal(torch.load(legacy, weights_only=True)["w"], torch.arange(4.0))
    with mmap_torch_load(None):
        assert config.load.mmap is False
