"""``vlbench check --throughput-ratios FILE``: run the ratio gate, print it, record it."""

from __future__ import annotations

from pathlib import Path


def ratio_check(floors_file: Path, results: Path, only: list[str] | None = None) -> int:
    """Exit status 1 when any bench is below its floor or failed to run, else 0."""
    from harness.gate.perf import gate

    floors = gate.load_floors(floors_file, only)
    print(f"throughput ratios from {floors_file}: {len(floors)} bench(es), median of interleaved pairs "
          "(bare seconds / harness seconds; 1.0 = as fast as the bare reference)", flush=True)
    findings = gate.check(floors, progress=lambda line: print(line, flush=True))
    out = gate.write_result(findings, floors_file, results)
    print(f"{gate.summary(findings)} -> {out}")
    return 1 if gate.failed(findings) else 0
