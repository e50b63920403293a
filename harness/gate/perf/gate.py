"""The ratio gate: run the benches a floors file names and fail any whose median ratio
falls below its floor.

Floors file (JSON, committed: ``benchmarks/baselines/perf_ratios.json``)::

    {"schema_version": 1,
     "benches": {"image_encode": {"kind": "image_encode", "reference": 0.95, "tolerance": 0.3,
                                  "options": {"model": "tiny-clip-synth", "items": 256}}, ...}}

``reference`` is the median ratio measured when the floors were set, ``tolerance`` the
relative drop allowed: floor = reference x (1 - tolerance). ``kind`` defaults to the entry's
name (several entries may share a kind with other options). The result of a check is
written as JSON (``write_result``) for the leaderboard page.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import UserError
from harness.gate.perf.benches import BENCHES, BenchOptions, run_bench
from harness.gate.perf.interleave import Measurement

SCHEMA_VERSION = 1
RESULT_PATH = Path(".perf-check") / "latest.json"  # under the results folder; the store's walk skips dot-folders


class RatioFileError(UserError, ValueError):
    """An unusable floors file; the message names the file and the key."""


@dataclass(frozen=True)
class Floor:
    name: str
    kind: str
    reference: float
    tolerance: float
    options: BenchOptions

    @property
    def floor(self) -> float:
        return self.reference * (1 - self.tolerance)


@dataclass(frozen=True)
class RatioFinding:
    floor: Floor
    measurement: Measurement | None
    status: str       # "ok" | "regression" | "error"
    reason: str = ""

    def to_dict(self) -> dict:
        m = self.measurement
        return {"name": self.floor.name, "kind": self.floor.kind, "status": self.status, "reason": self.reason,
                "ratio": m.ratio if m else None, "floor": self.floor.floor, "reference": self.floor.reference,
                "tolerance": self.floor.tolerance, "measurement": m.to_dict() if m else None}


def _number(v, where: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise RatioFileError(f"{where} must be a number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def load_floors(path: Path, only: list[str] | None = None) -> list[Floor]:
    """Parse and validate a floors file; ``only`` keeps the named entries (each must exist)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RatioFileError(f"cannot read throughput-ratio floors {str(path)!r} ({exc})") from None
    if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
        raise RatioFileError(f"{path}: expected an object with schema_version {SCHEMA_VERSION}")
    benches = raw.get("benches")
    if not isinstance(benches, dict) or not benches:
        raise RatioFileError(f"{path}: 'benches' must be a non-empty object (a check that compares nothing fails)")
    floors = []
    for name, e in benches.items():
        where = f"{path}: benches.{name}"
        if not isinstance(e, dict):
            raise RatioFileError(f"{where} must be an object")
        kind = e.get("kind", name)
        if kind not in BENCHES:
            raise RatioFileError(f"{where}: unknown kind {kind!r}; known: {', '.join(BENCHES)}")
        opts = e.get("options", {})
        if not isinstance(opts, dict):
            raise RatioFileError(f"{where}.options must be an object")
        try:
            options = BenchOptions.from_dict(opts, f"{where}.options")
        except (TypeError, ValueError) as exc:
            raise RatioFileError(str(exc)) from None
        floors.append(Floor(name, kind, _number(e.get("reference"), f"{where}.reference", 1e-6, 1e6),
                            _number(e.get("tolerance"), f"{where}.tolerance", 0.0, 0.99), options))
    if only:
        missing = sorted(set(only) - {f.name for f in floors})
        if missing:
            raise RatioFileError(f"{path}: no bench named {', '.join(missing)} (has: {', '.join(f.name for f in floors)})")
        floors = [f for f in floors if f.name in only]
    return floors


def evaluate(floor: Floor, measurement: Measurement) -> RatioFinding:
    ok = math.isfinite(measurement.ratio) and measurement.ratio >= floor.floor
    return RatioFinding(floor, measurement, "ok" if ok else "regression",
                        "" if ok else f"median ratio {measurement.ratio:.3f} < floor {floor.floor:.3f}")


def check(floors: list[Floor], progress=None) -> list[RatioFinding]:
    """Run each floor's bench and compare. A bench that fails to run is an "error" finding."""
    findings = []
    for f in floors:
        try:
            finding = evaluate(f, run_bench(f.kind, f.options))
        except Exception as exc:  # noqa: BLE001 - reported as a failed comparison, never skipped
            finding = RatioFinding(f, None, "error", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        findings.append(finding)
        if progress:
            progress(format_row(finding))
    return findings


def failed(findings: list[RatioFinding]) -> bool:
    return not findings or any(f.status != "ok" for f in findings)


def format_row(f: RatioFinding) -> str:
    m = f.measurement
    got = "-" if m is None else f"{m.ratio:.3f}"
    spread = "" if m is None else f" (pairs {min(m.ratios):.3f}..{max(m.ratios):.3f}, harness {m.harness_s:.3f}s" \
                                  f" bare {m.bare_s:.3f}s)"
    return f"{f.status.upper():<10} {f.floor.name:<16} ratio {got:>6}  floor {f.floor.floor:.3f}" \
           f" (ref {f.floor.reference:.3f} - {100 * f.floor.tolerance:g}%){spread}{'  ' + f.reason if f.reason else ''}"


def summary(findings: list[RatioFinding]) -> str:
    n = {s: sum(f.status == s for f in findings) for s in ("regression", "error", "ok")}
    return f"throughput ratios: {n['regression']} regression(s), {n['error']} error(s), {n['ok']} ok " \
           f"({len(findings)} benches)"


def machine() -> dict:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cpu": platform.processor() or platform.machine(), "cores": cores, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "loadavg_1m": load, "python": platform.python_version()}


def write_result(findings: list[RatioFinding], floors_file: Path, results: Path) -> Path:
    """``<results>/.perf-check/latest.json``: what the page shows as the latest check."""
    from harness.results.store import write_json_atomic

    payload = {"schema_version": SCHEMA_VERSION, "floors_file": str(floors_file),
               "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "passed": not failed(findings), "machine": machine(), "benches": [f.to_dict() for f in findings]}
    return write_json_atomic(Path(results) / RESULT_PATH, payload)


def read_result(results: Path) -> dict | None:
    """The latest check's JSON, or None when there is none (or it cannot be read)."""
    path = Path(results) / RESULT_PATH
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return raw if isinstance(raw, dict) and isinstance(raw.get("benches"), list) else None
