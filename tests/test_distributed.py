"""One run over 2 processes (gloo, as torchrun would launch it) equals the single-process run:
every metric and every sidecar entry; a dead rank fails the run with one line naming it,
writes nothing and leaves the finished cache chunks valid; bad launches get one line."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from conftest import FLICKR8K, ROOT, needs_flickr8k

from harness.cli.main import main
from harness.metrics import functional as M
from harness.parallel import shard_plan
from harness.results.store import iter_record_files, queries_path
from harness.run.runner import RunStatus, expand, run_one

TIMEOUT = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], world: int = 2, env: dict | None = None) -> list[subprocess.CompletedProcess]:
    """``python -m harness ARGS`` on ``world`` ranks with the variables torchrun sets."""
    port = _free_port()
    procs = []
    for rank in range(world):
        e = {**os.environ, "PYTHONPATH": str(ROOT), "RANK": str(rank), "LOCAL_RANK": str(rank),
             "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1", "VLBENCH_DIST_TIMEOUT": "120", **(env or {})}
        procs.append(subprocess.Popen([sys.executable, "-m", "harness", *args], env=e, cwd=ROOT,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=TIMEOUT)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def records(root: Path) -> dict:
    """(task, file name) -> (record, sidecar) for every record under ``root``."""
    out = {}
    for path in iter_record_files(root):
        sidecar = queries_path(path)
        out[(path.parent.name, path.name)] = (json.loads(path.read_text()),
                                              json.loads(sidecar.read_text()) if sidecar.exists() else None)
    return out


def single(tmp_path: Path, model: str, dataset: str, tasks: list[str], cli_opts: dict) -> Path:
    """The same runs in this process, one rank, into their own store."""
    from dataclasses import replace

    from harness.run.runner import RunOptions

    root = tmp_path / "single"
    for spec in expand(model, dataset, tasks, cli_opts.pop("split", None), replace(RunOptions(), **cli_opts)):
        assert run_one(spec, root).status == RunStatus.DONE
    return root


def assert_same(single_root: Path, dist_root: Path, n_records: int) -> None:
    one, two = records(single_root), records(dist_root)
    assert len(one) == n_records and sorted(one) == sorted(two)
    for key, (rec, side) in one.items():
        drec, dside = two[key]
        assert drec["metrics"] == rec["metrics"], key
        assert dside == side and side, key  # every per-query rank / correctness / group
        assert rec["options"]["world_size"] == 1
        assert drec["options"]["world_size"] == 2 and drec["options"]["dist_backend"] == "gloo"
        dist = drec["environment"]["distributed"]
        assert [r["rank"] for r in dist["ranks"]] == [0, 1] and dist["backend"] == "gloo"
        for stage in ("image_encode", "text_encode", "rerank"):
            if stage in drec["timings"]:
                per = [r["timings"][stage] for r in dist["ranks"]]
                assert all(p["items"] > 0 for p in per), (key, stage)  # both ranks did a share
                assert drec["timings"][stage]["items"] == rec["timings"][stage]["items"]
                if any(p.get("reused_items") for p in per):  # memoised tower features: no speed at all
                    assert drec["timings"][stage]["items_per_s"] is None
                    assert drec["timings"][stage]["reused_items"] == sum(p["reused_items"] for p in per)
                else:
                    assert drec["timings"][stage]["items_per_s"] == pytest.approx(sum(p["items_per_s"] for p in per))


def _ok(results: list[subprocess.CompletedProcess]) -> None:
    for rank, r in enumerate(results):
        assert r.returncode == 0, f"rank {rank}: {r.stderr[-2000:]}"


def test_two_ranks_equal_one_on_synthetic_retrieval_and_zeroshot(tmp_path):
    args = ["--chunk-items", "32", "--limit", "96", "--split", "test"]
    results = launch(["run", "--model", "tiny-clip-synth", "--dataset", "synthetic", *args, "--task", "retrieval",
                      "--task", "zeroshot", "--results", str(tmp_path / "dist")])
    _ok(results)
    assert results[1].stdout == "" and len(results[0].stdout.splitlines()) == 2  # rank 0 reports
    ref = single(tmp_path, "tiny-clip-synth", "synthetic", ["retrieval", "zeroshot"],
                 {"chunk_items": 32, "limit": 96, "split": "test"})
    assert_same(ref, tmp_path / "dist", 2)


def test_two_ranks_equal_one_on_a_reranked_cross_encoder(tmp_path):
    results = launch(["run", "--model", "fusion-xattn-synth", "--dataset", "synthetic", "--split", "test",
                      "--task", "retrieval", "--rerank-k", "10", "--limit", "48", "--chunk-items", "16", "--batch-size", "16",
                      "--results", str(tmp_path / "dist")])
    _ok(results)
    ref = single(tmp_path, "fusion-xattn-synth", "synthetic", ["retrieval"],
                 {"chunk_items": 16, "limit": 48, "split": "test", "rerank_k": 10, "batch_size": 16})
    assert_same(ref, tmp_path / "dist", 1)


@needs_flickr8k()
def test_two_ranks_with_gallery_slices_equal_one_on_flickr8k_dev(tmp_path):
    data_root = str(FLICKR8K.parent)
    results = launch(["run", "--model", "tiny-clip-synth", "--dataset", "flickr8k", "--split", "dev",
                      "--task", "retrieval", "--limit", "80", "--chunk-items", "32", "--shard-gallery",
                      "--data-root", data_root, "--results", str(tmp_path / "dist")])
    _ok(results)
    ref = single(tmp_path, "tiny-clip-synth", "flickr8k", ["retrieval"],
                 {"chunk_items": 32, "limit": 80, "split": "dev", "data_root": data_root})
    assert_same(ref, tmp_path / "dist", 1)
    (rec, _), = records(tmp_path / "dist").values()
    assert rec["options"]["shard_gallery"] is True


def torchrun(args: list[str], env: dict, world: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node WORLD -m harness ARGS``: the launcher users run, which
    SIGTERMs the surviving ranks as soon as one dies (issue 22)."""
    e = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "VLBENCH_DIST_TIMEOUT": "120", **env}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world),
                           "--master_port", str(_free_port()), "-m", "harness", *args], env=e, cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)


@pytest.mark.slow
def test_a_dead_rank_fails_the_run_naming_it_and_keeps_finished_chunks(tmp_path):
    cache = tmp_path / "embeddings"
    args = ["run", "--model", "tiny-clip-synth", "--dataset", "synthetic", "--split", "test", "--task",
            "retrieval", "--limit", "96", "--chunk-items", "32", "--results", str(tmp_path / "dist")]
    r = torchrun(args, env={"VLBENCH_FAULT": "encode@1", "VLBENCH_EMBEDDINGS": str(cache)})
    assert r.returncode != 0 and "exitcode  : -9" in r.stderr  # rank 1 killed after storing its first chunk
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("vlbench:")]
    # one line from vlbench, whether rank 0 saw the peer gone in a collective or got torchrun's SIGTERM first
    assert len(lines) == 1, r.stderr
    assert re.match(rf"vlbench: error: rank 1 of 2 \(host {re.escape(socket.gethostname())}, pid \d+\) died", lines[0])
    assert not (tmp_path / "dist").exists() or not iter_record_files(tmp_path / "dist")
    # the re-run (one process) reads back the chunks both ranks had finished, and they are right
    from harness.run.runner import RunOptions

    os.environ["VLBENCH_EMBEDDINGS"] = str(cache)  # monkeypatched per test by conftest
    spec = expand("tiny-clip-synth", "synthetic", ["retrieval"], "test", RunOptions(limit=96, chunk_items=32))[0]
    rerun = run_one(spec, tmp_path / "rerun")
    assert rerun.record.timings["image_encode"].cached_items >= 32  # rank 1's chunk 1 at least
    fresh = run_one(spec, tmp_path / "fresh", force=True)  # everything from cache now: same numbers
    assert fresh.record.metrics == rerun.record.metrics


def test_world_size_without_rendezvous_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "VLBENCH_DIST_TIMEOUT": "2"}
    r = subprocess.run([sys.executable, "-m", "harness", "run", "--model", "tiny-clip-synth", "--limit", "8",
                        "--results", str(tmp_path)], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("vlbench:")]
    assert len(lines) == 1 and "rank 0 of 2: no rendezvous with the other ranks at 127.0.0.1:" in lines[0]
    assert not iter_record_files(tmp_path)


def test_world_size_without_master_addr_is_one_line(monkeypatch, capsys, tmp_path):
    for k, v in {"WORLD_SIZE": "2", "RANK": "1"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert main(["run", "--model", "tiny-clip-synth", "--limit", "8", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("vlbench: error: WORLD_SIZE=2 is set but MASTER_ADDR is not; launch with torchrun (or "
                   "srun/a launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)")
    assert main(["sweep", "--suite", "default", "--results", str(tmp_path)]) == 2
    assert "vlbench sweep runs whole runs" in capsys.readouterr().err


def test_cuda_with_fewer_gpus_than_ranks_is_one_line():
    from harness.core.errors import UserError
    from harness.parallel.distributed import cuda_device_for

    assert cuda_device_for(0, 2, 2) == "cuda:0"
    with pytest.raises(UserError, match=r"--device cuda with 4 ranks on this node but 2 GPU\(s\): LOCAL_RANK 3"):
        cuda_device_for(3, 4, 2)
    with pytest.raises(UserError, match="but 0 GPU"):
        cuda_device_for(0, 1, 0)


# ------------------------------------------------------------- gallery slices, in one process


class _ThreadGroup:
    """An all-reduce over threads: what gloo does over processes, for a pure-function test."""

    def __init__(self, n: int):
        self.n, self.barrier, self.parts = n, threading.Barrier(n), {}

    def reducer(self, rank: int):
        def all_reduce(t, op):
            self.parts[rank] = t.clone()
            self.barrier.wait()
            stack = torch.stack([self.parts[r] for r in range(self.n)])
            out = stack.amax(0) if op == "max" else stack.sum(0)
            self.barrier.wait()
            return out
        return all_reduce


@pytest.mark.parametrize("world", [1, 2, 3])
def test_gallery_slices_give_the_exact_ranks_with_ties(world):
    g = torch.Generator().manual_seed(world)
    # coarse values: many exact ties between correct and wrong items, which must count against
    img = torch.randint(-2, 3, (37, 4), generator=g).float()
    txt = torch.randint(-2, 3, (90, 4), generator=g).float()
    c2i = torch.randint(0, 30, (90,), generator=g)  # images 30..36 are distractors only
    expected = M.retrieval_ranks(img, txt, c2i, chunk_size=7)
    group, out = _ThreadGroup(world), {}

    def rank(r):
        out[r] = M.sliced_retrieval_ranks(img, txt, c2i, lambda n: shard_plan.slice_of(n, r, world),
                                          group.reducer(r), chunk_size=7)
    threads = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in range(world):
        assert torch.equal(out[r][0], expected[0]) and torch.equal(out[r][1], expected[1])
    assert (expected[0] > 1).any() and (expected[1] > 1).any()


def test_owned_query_chunks_add_up_to_all_ranks():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(20, 8, generator=g), torch.randn(50, 8, generator=g)
    c2i = torch.arange(50) % 20
    full = M.retrieval_ranks(img, txt, c2i, chunk_size=6)
    parts = [M.retrieval_ranks(img, txt, c2i, chunk_size=6, owned=lambda i, r=r: i % 3 == r) for r in range(3)]
    for d in range(2):
        assert torch.equal(sum(p[d] for p in parts), full[d])
        assert all(((p[d] == 0) | (p[d] == full[d])).all() for p in parts)
