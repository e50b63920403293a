"""Issue 22, item 5: a rank's death is vlbench's one line naming the rank and its host, even
when the launcher (torchrun) SIGTERMs the survivors first; and RANK / LOCAL_RANK that cannot
be are refused before the rendezvous (not after its whole timeout, in C++ frames)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from harness.cli.main import main
from harness.parallel import distributed as D

# A rank 0 whose peer (rank 1, a finished child process) is dead, as torchrun leaves it before
# it SIGTERMs rank 0. "main": the main thread runs the handler; "blocked": the main thread is
# stuck in C (a collective waiting on the dead peer), so the watcher thread must report.
SCRIPT = """
import ctypes, os, signal, socket, subprocess, sys, time
from harness.parallel import launcher_stop
from harness.parallel import distributed as D
child = subprocess.Popen([sys.executable, "-c", "pass"]); child.wait()
host = socket.gethostname()
D._current = D.DistContext(rank=0, world_size=2, peers=[(host, os.getpid()), (host, child.pid)], stage="retrieval")
launcher_stop.GRACE_S = 0.3
assert launcher_stop.install(lambda: D._stopped(D._current))
print(child.pid, flush=True)
if sys.argv[1] == "blocked":
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])  # delivered to the watcher's thread
    sleep = ctypes.CDLL(None).sleep
    subprocess.Popen(["sh", "-c", f"sleep 0.5; kill -TERM {os.getpid()}"])  # once the main thread is in C
    sleep(30)
else:
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    except D.RankFailed as exc:  # what the CLI does with it
        print(f"vlbench: error: {exc}", file=sys.stderr)
        sys.exit(2)
print("not reached", flush=True)
"""


@pytest.mark.parametrize("mode", ["main", "blocked"])
def test_sigterm_after_a_peer_died_is_one_line_naming_it(mode):
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode], env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 25  # reported, not waited out
    child = r.stdout.split()[0]
    host = re.escape(socket.gethostname())
    assert r.returncode == 2 and "not reached" not in r.stdout
    assert r.stderr.count("\n") == 1, r.stderr
    assert re.fullmatch(rf"vlbench: error: rank 1 of 2 \(host {host}, pid {child}\) died; the launcher then stopped "
                        rf"rank 0 of 2 \(host {host}, pid \d+\) during retrieval \(SIGTERM\); the run is abandoned "
                        r"and no record written \(finished cache chunks stay valid for a re-run\)\n", r.stderr), r.stderr


def test_sigterm_with_no_dead_peer_names_this_rank():
    ctx = D.DistContext(rank=1, world_size=4, peers=[(socket.gethostname(), os.getpid())] * 4, stage="start-up")
    msg = str(D._stopped(ctx))
    assert msg.startswith(f"rank 1 of 4 (host {socket.gethostname()}, pid {os.getpid()}) stopped by SIGTERM during "
                          "start-up (a launcher stops every rank when one fails: its report names that rank)")


def test_a_failed_collective_names_the_dead_rank_and_its_host():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    host = socket.gethostname()
    ctx = D.DistContext(rank=0, world_size=3, peers=[(host, os.getpid()), (host, child.pid), ("other", 1)],
                        stage="image_encode")
    msg = str(D._failure(ctx, RuntimeError("Connection closed by peer [127.0.0.1]:1234\nmore")))
    assert msg == (f"rank 1 of 3 (host {host}, pid {child.pid}) died during image_encode; the run is abandoned "
                   "and no record written (finished cache chunks stay valid for a re-run) "
                   "[rank 0: Connection closed by peer [127.0.0.1]:1234]")


@pytest.mark.parametrize("env, message", [
    ({"RANK": "5", "WORLD_SIZE": "2"}, "RANK=5 with WORLD_SIZE=2: a rank is 0..1; each process needs its own RANK "
                                       "below WORLD_SIZE (torchrun sets both)"),
    ({"RANK": "-1", "WORLD_SIZE": "2"}, "RANK=-1 with WORLD_SIZE=2: a rank is 0..1"),
    ({"RANK": "1", "LOCAL_RANK": "2", "WORLD_SIZE": "2"}, "LOCAL_RANK=2 with WORLD_SIZE=2: a local rank is 0..1"),
    ({"RANK": "3", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4"},
     "LOCAL_RANK=3 with LOCAL_WORLD_SIZE=2: a local rank is 0..1"),
    ({"RANK": "0", "LOCAL_WORLD_SIZE": "8", "WORLD_SIZE": "4"},
     "LOCAL_WORLD_SIZE=8 with WORLD_SIZE=4: a node runs 1..4 ranks"),
    ({"RANK": "0", "WORLD_SIZE": "-2"}, "WORLD_SIZE=-2: the number of processes is at least 1"),
])
def test_impossible_ranks_fail_at_once_in_one_line(monkeypatch, capsys, tmp_path, env, message):
    for k in ("RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1", "VLBENCH_DIST_TIMEOUT": "300", **env}.items():
        monkeypatch.setenv(k, v)
    started = time.monotonic()
    assert main(["run", "--model", "tiny-clip-synth", "--limit", "8", "--results", str(tmp_path)]) == 2
    assert time.monotonic() - started < 60  # not the 300 s rendezvous timeout
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"vlbench: error: {message}") and "\n" not in err
