"""A whole ``vlbench run`` process against its floor, two code trees side by side (issue 15
item 4): e.g. the tree before a start-up change and after it, plus the bare reference
process (model load + bare encode, harness.gate.perf.process). Rounds interleave
before / after / bare, so all three meet the same machine load; every run is cold
(``--no-cache``, ``--force``) and each tree's metrics must be identical.

    .venv/bin/python benchmarks/startup.py --before /tmp/vlbench-before --rounds 2 \\
        --model open_clip:ViT-S-32-alt --weights ViT-S-32-alt-random-seed0.pt \\
        --dataset flickr8k --split dev --data-root /work/shared/data

Per run it prints the wall time, the record's stages, and the issue's ratio
wall / (model_load + image_encode + text_encode); at the end the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


CPU = {}  # the last run's user + system CPU seconds (less sensitive to machine load than wall time)


def run(cmd: list[str], root: Path) -> float:
    from harness.gate.perf.process import timed_run

    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "VLBENCH_OFFLINE": "1"}
    wall, CPU["last"] = timed_run(cmd, env, cwd=root)
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="root of the other tree (holding its harness/)")
    ap.add_argument("--after", default=str(ROOT))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="tiny-clip-synth")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--dataset", default="synthetic")
    ap.add_argument("--split", default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args()
    sys.path.insert(0, args.after)
    from harness.gate.perf.benches import BenchOptions
    from harness.gate.perf.process import latest_record, stage_floor, vlbench_command, write_spec

    weights = str(Path(args.weights).resolve()) if args.weights else None
    opts = BenchOptions(model=args.model, items=args.limit or 10**9, batch_size=args.batch_size, dataset=args.dataset,
                        split=args.split, weights=weights, data_root=args.data_root)
    tmp = Path(tempfile.mkdtemp(prefix="vlbench-startup-"))
    spec = write_spec(opts, tmp / "spec.json")
    n = len(json.loads(spec.read_text())["images"])
    print(f"{args.model} on {args.dataset}/{args.split} ({n} images), batch {args.batch_size}, cpu fp32, cold, "
          f"--no-cache; load average {os.getloadavg()[0]:.1f}", flush=True)
    rows: dict[str, list[dict]] = {"before": [], "after": [], "bare": []}
    metrics = {}
    for r in range(args.rounds):
        for side in ("before", "after", "bare") if r % 2 == 0 else ("after", "before", "bare"):
            root = Path(args.before if side == "before" else args.after).resolve()
            if side == "bare":
                wall = run([sys.executable, "-m", "harness.gate.perf.process", str(spec)], root)
                rows[side].append({"wall": wall, "cpu": CPU["last"]})
                print(f"round {r} bare    wall {wall:7.2f}s  cpu {CPU['last']:7.2f}s  (load {os.getloadavg()[0]:.1f})",
                      flush=True)
                continue
            results = tmp / f"results-{side}"
            wall = run(vlbench_command(opts, results), root)
            rec = latest_record(results)
            t = {k: v["seconds"] for k, v in rec["timings"].items()}
            floor = stage_floor(t)
            rows[side].append({"wall": wall, "floor": floor, "cpu": CPU["last"], **t})
            metrics.setdefault(side, rec["metrics"])
            print(f"round {r} {side:<7} wall {wall:7.2f}s  cpu {CPU['last']:7.2f}s  floor {floor:7.2f}s  "
                  f"ratio {wall / floor:.3f}  "
                  + "  ".join(f"{k} {v:.2f}" for k, v in sorted(t.items())) + f"  (load {os.getloadavg()[0]:.1f})",
                  flush=True)
    if metrics.get("before") != metrics.get("after"):
        raise SystemExit(f"metrics differ: before {metrics.get('before')} after {metrics.get('after')}")
    med = {s: statistics.median(x["wall"] for x in v) for s, v in rows.items()}
    cpu = {s: statistics.median(x["cpu"] for x in v) for s, v in rows.items()}
    for side in ("before", "after"):
        ratios = [x["wall"] / x["floor"] for x in rows[side]]
        print(f"{side:<7} median wall {med[side]:.2f}s, wall/(load+encode) median {statistics.median(ratios):.3f} "
              f"(runs {', '.join(f'{x:.3f}' for x in ratios)}), bare process / wall {med['bare'] / med[side]:.3f}, "
              f"median CPU {cpu[side]:.2f}s (bare {cpu['bare']:.2f}s)")
    print("metrics identical before and after:", sorted(metrics["after"])[:3], "...")


if __name__ == "__main__":
    main()
