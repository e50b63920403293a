"""Writing results: a read-only or full store fails before any compute, in one line naming the
path; files follow the umask; ``leaderboard --out`` writes through symlinks and refuses
special files. Tests run as root in CI, where mode bits do not stop a write: read-only is
made with a path under a regular file, full and read-only filesystems by failing syscalls."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from harness.cli.main import main
from harness.results import store
from tests.lb_fixtures import T0, Spec, make, retrieval_metrics, retrieval_outcomes

RUN = ["run", "--model", "tiny-clip-random", "--dataset", "synthetic", "--task", "retrieval", "--limit", "20",
       "--batch-size", "16", "--workers", "0"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a run gets as far as evaluating anything."""
    from harness.run import runner

    def boom(*a, **k):
        raise AssertionError("the run started although the results folder is not writable")

    monkeypatch.setattr(runner, "run_one", boom)


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("vlbench: error: ") and "internal error" not in lines[0]
    return lines[0]


def test_results_under_a_regular_file_fails_before_any_model_loads(capsys, tmp_path, no_model_load):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for command in (RUN, ["sweep", "--suite", "default", "--workers", "0"]):
        code, _, err = run_cli(capsys, *command, "--results", str(blocker / "results"))
        line = one_error_line(err)
        assert code == 2 and f"results folder not writable: {blocker / 'results'}" in line, line


@pytest.mark.parametrize("fail_at,code_,words", [("open", errno.EROFS, "Read-only file system"),
                                                  ("write", errno.ENOSPC, "No space left on device"),
                                                  ("fsync", errno.ENOSPC, "No space left on device")])
def test_read_only_or_full_store_fails_up_front(capsys, tmp_path, monkeypatch, no_model_load, fail_at, code_, words):
    results = tmp_path / "results"

    def fail(*a, **k):
        raise OSError(code_, os.strerror(code_))

    monkeypatch.setattr(store.os, fail_at, fail)
    code, _, err = run_cli(capsys, *RUN, "--results", str(results))
    line = one_error_line(err)
    assert code == 2 and str(results) in line and words in line, line
    monkeypatch.undo()
    assert list(results.iterdir()) == []  # the folder was made; the probe is gone


def test_disk_full_when_the_record_is_written_names_the_file(capsys, tmp_path, monkeypatch):
    """The probe passed, then the disk filled during the compute: one line naming the file,
    no half-written or temp files left behind."""
    results = tmp_path / "results"
    monkeypatch.setattr(store, "check_writable", lambda root, what="": root)
    real_fsync = os.fsync

    def fsync(fd):
        if str(results) in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(store.os, "fsync", fsync)
    code, _, err = run_cli(capsys, *RUN, "--no-cache", "--results", str(results))
    line = one_error_line(err)
    assert code == 2 and "No space left on device" in line and "cannot write " + str(results) in line, line
    assert [p for p in results.rglob("*") if p.is_file()] == []


def test_full_disk_elsewhere_is_one_line_naming_the_path(capsys, tmp_path, monkeypatch):
    """Any ENOSPC/EROFS met outside the store (a library writing its own files) still names its path."""
    from harness.cli import commands

    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/var/cache/some-lib/blob")

    monkeypatch.setattr(commands, "cmd_run", full)
    code, _, err = run_cli(capsys, *RUN)
    line = one_error_line(err)
    assert code == 2 and "/var/cache/some-lib/blob: No space left on device" in line


def test_sweep_stops_at_a_full_store_instead_of_failing_every_run(capsys, tmp_path, monkeypatch):
    from harness.run import runner

    calls = []

    def full(spec, results, force=False):
        calls.append(spec)
        raise store.storage_error(results / "x.json", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    monkeypatch.setattr(runner, "run_one", full)
    code, _, err = run_cli(capsys, "sweep", "--suite", "default", "--workers", "0", "--results", str(tmp_path))
    assert code == 2 and len(calls) == 1 and "No space left on device" in one_error_line(err)


# ---------------------------------------------------------------- modes follow the umask

def _record():
    spec = Spec("m", "clip")
    per_query = retrieval_outcomes(spec, seed=1)
    return make(spec, "synthetic", "test", "retrieval", retrieval_metrics(per_query), T0), per_query


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_records_sidecars_and_cache_files_follow_the_umask(tmp_path, umask, mode):
    import torch

    from harness.results.cache import load_or_compute

    old = os.umask(umask)
    try:
        assert store.current_umask() == umask
        record, per_query = _record()
        path = store.save(tmp_path / "results", record, per_query)
        load_or_compute(tmp_path / "emb", {"m": 1}, 3, lambda s, e: {"x": torch.zeros(e - s, 2)}, chunk_items=2)
    finally:
        os.umask(old)
    files = [path, store.queries_path(path), *sorted((tmp_path / "emb").rglob("*.safetensors")),
             *(tmp_path / "emb").rglob("manifest.json")]
    assert len(files) == 5
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == mode, (f, oct(f.stat().st_mode))


# ---------------------------------------------------------------- leaderboard --out

@pytest.fixture
def small_store(tmp_path):
    record, per_query = _record()
    store.save(tmp_path / "results", record, per_query)
    return tmp_path / "results"


def test_out_through_a_symlink_writes_its_target(capsys, tmp_path, small_store):
    target = tmp_path / "site" / "page.html"
    target.parent.mkdir()
    target.write_text("old page")
    link = tmp_path / "link.html"
    link.symlink_to(os.path.relpath(target, tmp_path))  # relative, as `ln -s` usually makes them
    code, _, err = run_cli(capsys, "leaderboard", "--results", str(small_store), "--out", str(link), "--no-plots",
                           "--n-boot", "20")
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(target, tmp_path)
    assert target.read_text().startswith("<!DOCTYPE html") and "m" in target.read_text()
    assert sorted(p.name for p in target.parent.iterdir()) == ["page.html"]  # no temp file left


def test_out_through_a_dangling_symlink_creates_the_target(tmp_path, small_store):
    from leaderboard import build

    link = tmp_path / "link.html"
    link.symlink_to(tmp_path / "pub" / "index.html")
    build(small_store, link, options=_fast())
    assert link.is_symlink() and (tmp_path / "pub" / "index.html").is_file()


def _fast():
    from leaderboard import PageOptions, UncertaintyOptions

    return PageOptions(plots=False, uncertainty=UncertaintyOptions(n_boot=20))


@pytest.mark.parametrize("kind", ["fifo", "dev-null", "folder", "link-to-fifo"])
def test_out_refuses_what_is_not_a_regular_file(capsys, tmp_path, small_store, kind):
    if kind in ("fifo", "link-to-fifo"):
        out = tmp_path / "pipe"
        os.mkfifo(out)
        if kind == "link-to-fifo":
            (tmp_path / "link").symlink_to(out)
            out = tmp_path / "link"
    elif kind == "dev-null":
        out = tmp_path / "null"
        os.symlink("/dev/null", out)  # a character device, reached as root would reach /dev/full
    else:
        out = tmp_path / "folder"
        out.mkdir()
    code, _, err = run_cli(capsys, "leaderboard", "--results", str(small_store), "--out", str(out), "--no-plots")
    line = one_error_line(err)
    assert code == 2 and str(out) in line and ("not a regular file" in line or "a folder" in line), line
    if kind == "fifo":
        assert stat.S_ISFIFO(os.stat(out).st_mode)  # still a FIFO, not replaced
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_out_dev_full_stays_a_device():
    """The reproduction from the issue, on the real device node: refused, left alone."""
    from harness.results.store import StorageError, write_bytes_atomic

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this machine")
    with pytest.raises(StorageError, match="/dev/full.*not a regular file"):
        write_bytes_atomic(__import__("pathlib").Path("/dev/full"), b"page")
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_record_that_fails_to_write_leaves_no_sidecar(tmp_path, monkeypatch):
    record, per_query = _record()
    real = store.write_bytes_atomic

    def full_for_records(path, data):
        if not str(path).endswith(store.QUERIES_SUFFIX):
            raise store.storage_error(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        return real(path, data)

    monkeypatch.setattr(store, "write_bytes_atomic", full_for_records)
    with pytest.raises(store.StorageError, match="No space left on device"):
        store.save(tmp_path, record, per_query)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
