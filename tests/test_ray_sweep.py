"""``vlbench sweep --executor ray`` on a local 2-CPU Ray instance: the same records as a local
sweep, a worker killed mid-run loses nothing finished, failures are named; bad setups get
one line. Skipped when Ray is not installed (``pip install 'vlbench[ray]'``; CI installs it)."""

from __future__ import annotations

import json
import sys

import pytest

from harness.cli.main import main
from harness.results.store import iter_record_files

ray = pytest.importorskip("ray")

SUITE = """name: ray-part
description: a small part of the default suite
runs:
  - models: [tiny-clip-synth, tiny-clip-random]
    datasets: [synthetic]
    tasks: [retrieval]
    split: test
    limit: 48
"""


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "ray-part.yaml"
    path.write_text(SUITE)
    return str(path)


def metrics(root) -> dict:
    return {p.name: json.loads(p.read_text())["metrics"] for p in iter_record_files(root)}


def test_ray_sweep_equals_local_and_a_killed_worker_is_retried(ray_instance, suite, tmp_path, monkeypatch, capsys):
    assert main(["sweep", "--suite", suite, "--results", str(tmp_path / "local")]) == 0
    # the first run to reach its record write is SIGKILLed (its worker dies); Ray retries it
    monkeypatch.setenv("VLBENCH_FAULT", "run")
    monkeypatch.setenv("VLBENCH_FAULT_ONCE", str(tmp_path / "fired"))
    capsys.readouterr()
    assert main(["sweep", "--suite", suite, "--executor", "ray", "--results", str(tmp_path / "ray")]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "fired").exists()  # a worker really was killed
    local, remote = metrics(tmp_path / "local"), metrics(tmp_path / "ray")
    assert len(local) == 2 and local == remote
    assert "sweep: 2 done, 0 running, 0 failed, 0 skipped, 2 total" in out
    # everything is in the store now: skipped before dispatch
    assert main(["sweep", "--suite", suite, "--executor", "ray", "--results", str(tmp_path / "ray")]) == 0
    assert capsys.readouterr().out.count("skipped, already in the store") == 2


def test_a_run_that_keeps_dying_is_named_and_finished_ones_stay(ray_instance, suite, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VLBENCH_FAULT", "run")
    monkeypatch.setenv("VLBENCH_FAULT_ONCE", str(tmp_path / "fired"))
    results = str(tmp_path / "ray")
    assert main(["sweep", "--suite", suite, "--executor", "ray", "--max-retries", "0", "--results", results]) == 1
    err = capsys.readouterr().err
    assert "failed after 1 attempt(s)" in err and "1 of 2 runs failed: tiny-clip-" in err
    assert len(iter_record_files(tmp_path / "ray")) == 1  # the other run's record is whole
    monkeypatch.delenv("VLBENCH_FAULT")
    assert main(["sweep", "--suite", suite, "--executor", "ray", "--results", results]) == 0
    assert capsys.readouterr().out.count("skipped, already in the store") == 1
    assert len(iter_record_files(tmp_path / "ray")) == 2


def test_ray_missing_is_one_line(monkeypatch, capsys, suite, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["sweep", "--suite", suite, "--executor", "ray", "--results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == ("vlbench: error: --executor ray needs Ray, which is not "
                                               "installed: pip install 'vlbench[ray]'")


def test_unreachable_ray_address_is_one_line(capsys, suite, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["sweep", "--suite", suite, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}",
                 "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vlbench: error: --ray-address 127.0.0.1:{port}: no Ray cluster reachable there within 5s "
                   "(Connection refused); start one with `ray start --head` or leave out --ray-address for a "
                   "local instance"]
