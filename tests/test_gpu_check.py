"""benchmarks/gpu_check.py's driver (issue 24) at dry-run sizes: a part runs in its own process
and reports its figures, a part past its timeout is killed and reported while its figures so
far are kept, CUDA-only parts are skipped by name, and the JSON / Markdown it writes. The
whole dry run is `make gpu-check-dry` (CI), not a unit test: it takes a minute."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
from gpu_figures import FAIL, PASS, Recorder, read_part_file  # noqa: E402


def part(name: str) -> gpu_check.Part:
    return next(p for p in gpu_check.PARTS if p.name == name)


def test_a_part_runs_in_its_own_process_and_reports_its_checks(tmp_path):
    with open(tmp_path / "log", "w") as log:
        r = gpu_check.run_part(part("scoring"), True, 120, log, tmp_path)
    assert r["status"] == "ok", (tmp_path / "log").read_text()[-2000:]
    rows = {f["figure"]: f for f in r["rows"]}
    ranks = rows["ranks on cpu vs CPU, 300 x 1500: queries off by more than one place"]
    assert ranks["value"] == 0 and ranks["verdict"] == PASS  # the same code on the same device: same ranks
    wall = rows["scoring 2,000 x 10,000, d=512, both directions: wall"]
    assert wall["value"] > 0 and wall["verdict"] in ("meets", "misses") and wall["target"] == "<= 0.4 s"
    assert "===== scoring" in (tmp_path / "log").read_text()


def test_a_part_past_its_timeout_is_killed_and_reported(tmp_path):
    with open(tmp_path / "log", "w") as log:
        r = gpu_check.run_part(part("encode"), True, 2, log, tmp_path)
    assert r["status"] == "timeout" and r["reason"] == "killed after 2 s"
    assert r["seconds"] < 10  # the whole process group went at the timeout, not at the part's end


def test_cuda_only_parts_are_skipped_by_name_and_a_spent_budget_starts_nothing(tmp_path):
    import time

    skipped = gpu_check._one(part("perfgate_sync"), True, time.perf_counter() + 100, None, tmp_path)
    assert skipped["status"] == "skipped" and skipped["reason"].startswith("needs CUDA: ")
    late = gpu_check._one(part("scoring"), True, time.perf_counter() + 1, None, tmp_path)
    assert late["status"] == "timeout" and "budget" in late["reason"]


def test_recorder_keeps_what_it_measured_and_no_nan(tmp_path):
    rec = Recorder(tmp_path / "p.json")
    rec.against("wall", 0.5, "s", "<= 0.4 s", False)
    rec.check("same ranks", 0, "queries", "<= 1", True)
    rec.check("dtypes", "('float16', None)", "", "('float16', None)", False)
    rec.figure("ratio", math.nan, "x")
    got = read_part_file(tmp_path / "p.json")
    assert [r["verdict"] for r in got["rows"]] == ["misses", PASS, FAIL, ""]
    assert got["rows"][3]["value"] is None and rec.failed == ["dtypes"]
    assert read_part_file(tmp_path / "missing.json") == {"rows": [], "notes": []}


def test_table_and_files(tmp_path):
    results = [
        {"part": "scoring", "what": "s", "status": "ok", "reason": "", "rows": [
            {"figure": "wall | both", "value": 0.31234, "unit": "s", "target": "<= 0.4 s", "verdict": "meets",
             "detail": ""}]},
        {"part": "encode", "what": "harness / bare encode", "status": "timeout", "reason": "killed after 120 s",
         "rows": []},
    ]
    md = gpu_check.table(results)
    lines = md.splitlines()
    assert lines[0] == "| " + " | ".join(gpu_check.COLUMNS) + " |"
    assert lines[2] == "| scoring | wall / both | 0.3123 s | <= 0.4 s | meets |  |"
    assert lines[3] == "| encode | harness / bare encode | - |  | timeout | part timeout: killed after 120 s |"
    json_path, md_path = gpu_check.write_outputs(tmp_path / "out", {"parts": results}, md)
    assert json.loads(json_path.read_text())["parts"][1]["status"] == "timeout"
    assert md_path.read_text() == md + "\n"
    with pytest.raises(ValueError):  # a NaN never reaches the JSON
        gpu_check.write_outputs(tmp_path / "out", {"x": math.nan}, md)


def test_results_md_has_the_gpu_table_with_every_part():
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    section = text[text.index("\n## GPU"):]
    assert "| " + " | ".join(gpu_check.COLUMNS) + " |" in section
    for p in gpu_check.PARTS:
        assert f"| {p.name} |" in section, p.name
