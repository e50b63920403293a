"""How often the throughput-ratio gate misfires on unchanged code, with and without a
competing load (issue 15 item 3): runs the benches of a floors file ``--runs`` times per
condition, conditions alternating run by run ("as is", then with ``--burners`` processes
spinning on every core), and prints per bench the spread of the median ratios and how many
runs a tolerance of 10..50% below the overall median would have failed.

    .venv/bin/python benchmarks/perf_misfire.py --runs 20 --out misfire.json
    .venv/bin/python benchmarks/perf_misfire.py --runs 5 --only scoring --only image_encode
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOLERANCES = (0.1, 0.2, 0.3, 0.4, 0.5)


def _burn() -> None:
    while True:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--floors", default=str(ROOT / "benchmarks" / "baselines" / "perf_ratios.json"))
    ap.add_argument("--runs", type=int, default=20, help="runs per condition")
    ap.add_argument("--burners", type=int, default=os.cpu_count() or 2, help="spinning processes in the loaded runs")
    ap.add_argument("--only", action="append", default=None)
    ap.add_argument("--out", default=None, help="write every ratio as JSON here")
    args = ap.parse_args()
    from harness.gate.perf.benches import run_bench
    from harness.gate.perf.gate import load_floors

    floors = load_floors(Path(args.floors), args.only)
    ratios: dict[str, dict[str, list[float]]] = {c: {f.name: [] for f in floors} for c in ("as_is", "loaded")}
    loads: dict[str, list[float]] = {"as_is": [], "loaded": []}
    for r in range(args.runs):
        for cond in ("as_is", "loaded"):
            burners = [mp.Process(target=_burn, daemon=True) for _ in range(args.burners if cond == "loaded" else 0)]
            for b in burners:
                b.start()
            try:
                t0 = time.perf_counter()
                got = {f.name: run_bench(f.kind, f.options).ratio for f in floors}
            finally:
                for b in burners:
                    b.terminate()
                    b.join()
            loads[cond].append(os.getloadavg()[0])
            for k, v in got.items():
                ratios[cond][k].append(v)
            print(f"run {r} {cond:<6} load {loads[cond][-1]:5.1f} {time.perf_counter() - t0:6.1f}s  "
                  + "  ".join(f"{k} {v:.3f}" for k, v in got.items()), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps({"ratios": ratios, "loadavg": loads}, indent=1))
    for f in floors:
        every = ratios["as_is"][f.name] + ratios["loaded"][f.name]
        ref = statistics.median(every)
        print(f"{f.name}: median {ref:.3f} over {len(every)} runs (committed reference {f.reference:.3f})")
        for cond in ("as_is", "loaded"):
            xs = ratios[cond][f.name]
            fails = {t: sum(x < ref * (1 - t) for x in xs) for t in TOLERANCES}
            print(f"  {cond:<6} n={len(xs)} min {min(xs):.3f} median {statistics.median(xs):.3f} max {max(xs):.3f}; "
                  f"load {min(loads[cond]):.0f}-{max(loads[cond]):.0f}; runs below median x (1 - tol): "
                  + ", ".join(f"{int(100 * t)}%: {n}" for t, n in fails.items()))


if __name__ == "__main__":
    main()
