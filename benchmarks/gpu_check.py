"""One command on a machine with a CUDA GPU: every owed GPU figure, and every CUDA code path of
vlbench once with asserted numbers (issue 24). Start it through benchmarks/gpu_check.sh
(which picks the Python and adds the packages carried in .gpu/), or ``make gpu-check``.

    benchmarks/gpu_check.sh [--out DIR]          # the GPU run: about 5 minutes on an H100
    benchmarks/gpu_check.sh --dry-run            # the same script on CPU at tiny sizes (CI)

The first line names the device, driver and torch. Each part runs in its own process with
its own timeout (cut further so the whole run stays inside ``--budget-s``); a part that fails
or times out is reported and the others still run. A part writes its figures as it measures
them, so a part cut off at its timeout still reports what it had. At the end it writes
``gpu_check.json`` (every figure) and ``gpu_check.md`` (the table) under ``--out`` (default
$OUT, else ./gpu-check-out), with every part's output in ``gpu_check.log``, and prints the
table. Exit status 1 when a check failed, a part failed or timed out; a figure that misses
its target is reported, not a failure (that is what the figures are for).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gpu_figures import DRY, FAIL, GPU, ROOT, SKIPPED, Recorder, Skip, read_part_file


@dataclass(frozen=True)
class Part:
    name: str
    module: str      # gpu_parts or gpu_paths
    timeout_s: int   # on the GPU; the dry run gets DRY_TIMEOUT_S
    what: str
    needs_cuda: str = ""  # why it cannot run at all without CUDA ("" : it runs in the dry run too)


# Order: the quick CUDA-path checks first (a device bug shows in the first minute), then the
# owed figures. Timeouts sum to 450 s; with set-up (~20 s) the whole stays under 8 minutes.
PARTS = (
    Part("cuda_vs_cpu", "gpu_paths", 45, "tiny CLIPs retrieval + zero-shot on cuda = CPU; Stage sync and memory"),
    Part("precisions", "gpu_paths", 35, "--precision fp16 | bf16 | amp: dtypes recorded and computed, numbers"),
    Part("oom_backoff", "gpu_paths", 25, "a planted CUDA out-of-memory backs off and keeps the CPU's numbers"),
    Part("one_rank", "gpu_paths", 30, "torchrun, a one-rank NCCL group = the single process"),
    Part("perfgate_sync", "gpu_parts", 45, "the perf gate fails the extra-device-sync plant",
         needs_cuda="the plant is a torch.cuda.synchronize() per batch: nothing to measure on CPU"),
    Part("scoring", "gpu_parts", 40, "100k x 500k recall scoring: wall time and peak device memory"),
    Part("encode", "gpu_parts", 135, "harness / bare encode, ViT-B-32 bf16 and fp32, batch 256 and 1,024"),
    Part("vs_clip_benchmark", "gpu_parts", 95, "vlbench vs CLIP_benchmark end to end, 1,000 Flickr8k images"),
)
DRY_TIMEOUT_S = 120  # a part takes 5-20 s of CPU at dry-run sizes; room for a loaded CI machine
DRY_BUDGET_S = 900
COLUMNS = ("Part", "Figure", "Value", "Target", "Verdict", "Detail")


def environment_line(dry_run: bool) -> tuple[str, dict]:
    """The first line: device, driver, CUDA and torch versions (and the facts as a dict)."""
    import torch

    env = {"torch": torch.__version__, "python": platform.python_version(), "cores": len(os.sched_getaffinity(0)),
           "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
    if env["cuda_available"]:
        p = torch.cuda.get_device_properties(0)
        env.update(device=torch.cuda.get_device_name(0), capability=f"sm_{p.major}{p.minor}",
                   memory_gib=round(p.total_memory / 2**30, 1), device_count=torch.cuda.device_count(),
                   driver=_driver_version())
        where = f"{env['device']} ({env['capability']}, {env['memory_gib']} GiB, {env['device_count']} device(s))"
    else:
        env.update(device=f"cpu ({platform.machine()})", driver=None)
        where = f"no CUDA device, cpu {platform.machine()}"
    mode = "dry run on CPU at tiny sizes" if dry_run else "GPU run"
    line = (f"gpu-check ({mode}): {where}, driver {env['driver'] or 'none'}, CUDA {env['torch_cuda'] or 'none'}, "
            f"torch {env['torch']}, Python {env['python']}, {env['cores']} cores")
    return line, env


def _driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout.split()
        return out[0] if out else "unknown"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import pynvml  # nvidia-ml-py, where nvidia-smi is missing

        pynvml.nvmlInit()
        v = pynvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:  # noqa: BLE001 - the line says "unknown" rather than failing the run
        return "unknown"


def plan_check(sizes) -> list[str]:
    """Resolve every model name a run will load (names only, nothing loaded): the dry run
    checks the GPU run's names too, so a typo fails in CI, not on the lent GPU."""
    from harness.models import resolve

    bad = []
    for name in sizes.model_names():
        try:
            resolve(name)
        except Exception as exc:  # noqa: BLE001 - every unknown name is listed
            bad.append(f"{name}: {exc}")
    return bad


def run_part(part: Part, dry_run: bool, timeout: float, log, work: Path) -> dict:
    """The part in its own process group (killed whole at the timeout, torchrun's workers too)."""
    record = work / f"{part.name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--part", part.name, "--record", str(record)]
    if dry_run:
        cmd.append("--dry-run")
    log.write(f"\n===== {part.name} ({part.what}); timeout {timeout:.0f} s\n")
    log.flush()
    t0, cpu0 = time.perf_counter(), _children_cpu()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        rc = proc.wait(timeout=max(1.0, timeout))
        status = {0: "ok", 3: "skipped"}.get(rc, "failed")
        reason = "" if rc in (0, 3) else f"exit {rc}" + "".join(f": {n}" for n in read_part_file(record)["notes"][-1:])
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        status, reason = "timeout", f"killed after {timeout:.0f} s"
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0  # CPU: what a loaded machine cannot inflate
    got = read_part_file(record)
    if status == "skipped":
        reason = " ".join(got.get("notes", [])) or "skipped"
    failed = [r["figure"] for r in got.get("rows", []) if r.get("verdict") == FAIL]
    if status == "ok" and failed:  # a part reports its failed checks itself; keep the two in step
        status, reason = "failed", f"{len(failed)} check(s) failed"
    elif status == "failed" and failed:
        reason = f"{len(failed)} check(s) failed"
    return {"part": part.name, "what": part.what, "status": status, "reason": reason, "seconds": round(seconds, 1),
            "cpu_s": round(cpu, 1), "timeout_s": round(timeout), "rows": got.get("rows", []),
            "notes": got.get("notes", [])}


def _children_cpu() -> float:
    """User + system CPU seconds of this process's waited-for children (a part and its own
    children; torchrun's workers too once torchrun has waited for them)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the part's process group, SIGKILL 10 s later. torchrun starts its workers in
    sessions of their own: on SIGTERM it stops them itself, which the 10 s leave time for."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def part_main(name: str, record: str, dry_run: bool) -> int:
    """Inside a part's process: run it, exit 0 (ok), 1 (a check failed), 3 (skipped)."""
    import gpu_parts
    import gpu_paths

    part = next(p for p in PARTS if p.name == name)
    fn = getattr({"gpu_parts": gpu_parts, "gpu_paths": gpu_paths}[part.module], name)
    rec = Recorder(record)
    try:
        fn(rec, DRY if dry_run else GPU, dry_run)
    except Skip as why:
        rec.note(str(why))
        return 3
    except BaseException as exc:  # the table gets the cause in one line; the log the traceback
        rec.note(f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else ''}")
        raise
    return 1 if rec.failed else 0


def table(results: list[dict]) -> str:
    """Markdown: one row per figure, and one per part that gave none (skipped, failed, cut)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in results:
        rows = r["rows"] or [{"figure": r["what"], "value": None, "unit": "", "target": "", "verdict": "",
                              "detail": ""}]
        for i, f in enumerate(rows):
            verdict = f["verdict"] or ("" if r["status"] == "ok" else r["status"])
            detail = f.get("detail", "")
            if i == len(rows) - 1 and r["status"] != "ok":  # the part's own outcome, on its last row
                detail = "; ".join(x for x in (detail, f"part {r['status']}: {r['reason']}") if x)
            cells = (r["part"], f["figure"], _value(f), f["target"], verdict, detail)
            lines.append("| " + " | ".join(str(c).replace("|", "/").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


def _value(f: dict) -> str:
    v = f["value"]
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return f"{v} {f['unit']}".strip()


def write_outputs(out: Path, payload: dict, md: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "gpu_check.json", out / "gpu_check.md"
    for path, text in zip(paths, (json.dumps(payload, indent=1, allow_nan=False) + "\n", md + "\n")):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)  # never half a file, even when the run is cut off while writing
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="on CPU at tiny sizes; parts needing CUDA are skipped")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-check-out", help="folder for the JSON, table, log")
    ap.add_argument("--only", action="append", choices=[p.name for p in PARTS], help="run only these parts")
    ap.add_argument("--budget-s", type=float, default=None,
                    help=f"all parts together (default 450: 8 min with set-up; dry run {DRY_BUDGET_S})")
    ap.add_argument("--part", help=argparse.SUPPRESS)
    ap.add_argument("--record", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.part:
        return part_main(args.part, args.record, args.dry_run)
    if args.budget_s is None:
        args.budget_s = float(DRY_BUDGET_S if args.dry_run else 450)

    started = time.perf_counter()
    line, env = environment_line(args.dry_run)
    print(line, flush=True)
    if not args.dry_run and not env["cuda_available"]:
        print("gpu-check: no CUDA device here; run with --dry-run on a CPU machine", file=sys.stderr)
        return 2
    bad = plan_check(GPU) + (plan_check(DRY) if args.dry_run else [])
    if bad:
        print("gpu-check: unknown model name(s): " + "; ".join(bad), file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    deadline = started + args.budget_s
    with open(out / "gpu_check.log", "w", encoding="utf-8") as log, \
            tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        log.write(line + "\n")
        for part in PARTS:
            if args.only and part.name not in args.only:
                continue
            results.append(_one(part, args.dry_run, deadline, log, Path(work)))
            r = results[-1]
            print(f"{r['part']:<18} {r['status']:<8} {r['seconds']:6.1f} s (CPU {r.get('cpu_s', 0):5.1f} s)  "
                  f"{r['reason']}", flush=True)
    payload = {"schema": 1, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "mode": "dry-run" if args.dry_run else "gpu", "environment": env, "environment_line": line,
               "wall_s": round(time.perf_counter() - started, 1), "budget_s": args.budget_s, "parts": results}
    cpu = sum(r.get("cpu_s", 0.0) for r in results)
    md = (f"{line}\n\n{table(results)}\n\n"
          f"wall {payload['wall_s']} s (budget {args.budget_s:g} s); parts' CPU {cpu:.1f} s")
    json_path, md_path = write_outputs(out, payload, md)
    skipped = [f"{r['part']} ({r['reason']})" for r in results if r["status"] == "skipped"]
    skipped += [f"{r['part']}: {f['figure']} ({f['detail']})" for r in results for f in r["rows"]
                if f["verdict"] == SKIPPED]
    print("\n" + md)
    for s in skipped:
        print(f"skipped: {s}")
    bad_parts = [r["part"] for r in results if r["status"] in ("failed", "timeout")]
    print(f"wrote {json_path} and {md_path}; " + (f"FAILED: {', '.join(bad_parts)}" if bad_parts else "no failures"))
    return 1 if bad_parts else 0


def _one(part: Part, dry_run: bool, deadline: float, log, work: Path) -> dict:
    if dry_run and part.needs_cuda:
        return {"part": part.name, "what": part.what, "status": "skipped", "reason": f"needs CUDA: {part.needs_cuda}",
                "seconds": 0.0, "cpu_s": 0.0, "timeout_s": 0, "rows": [], "notes": []}
    left = deadline - time.perf_counter()
    if left < 5:
        return {"part": part.name, "what": part.what, "status": "timeout", "seconds": 0.0, "cpu_s": 0.0, "timeout_s": 0,
                "reason": "not started: the run's budget is spent", "rows": [], "notes": []}
    return run_part(part, dry_run, min(DRY_TIMEOUT_S if dry_run else part.timeout_s, left), log, work)


if __name__ == "__main__":
    sys.exit(main())
