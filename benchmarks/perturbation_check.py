"""Does the regression gate hold on another x86 CPU? Run a suite again from a copy of its
embedding cache perturbed at float32 rounding level, and check it against the baseline.

Another CPU's kernels give embeddings that differ in their last bits (issue 22: without
AVX-512, tiny-clip-random's probe acc5 went 98.12 -> 97.50 and failed the gate on unchanged
code). This script copies the cache that ``make bench`` filled, multiplies every stored value
by ``1 + rel * N(0, 1)`` (``harness.verify.perturb``, seeded), re-runs the suite from the copy
(nothing is re-encoded: every encode stage must be served by the perturbed cache) and then

1. proves the perturbation reached the probe: every linear probe's encode stages were read
   from the perturbed cache and its held-out log-likelihoods differ from the unperturbed
   run's (``--reference``), so it was fitted on moved features (it also counts the other
   runs' encode stages served from the perturbed cache; pair scores are not cached);
2. runs ``vlbench check --no-throughput`` against the baseline (exit 1 on a regression);
3. prints, per gated metric that moved, unperturbed -> perturbed (``--seeds`` several: the
   largest move), which is how the tolerances recorded in benchmarks/RESULTS.md were measured.

    python benchmarks/perturbation_check.py --reference .cache/ci-results            # CI
    python benchmarks/perturbation_check.py --reference results --seeds 0 1 2 --model tiny-clip-random
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.gate import check  # noqa: E402
from harness.results.cache import cache_root  # noqa: E402
from harness.verify.perturb import perturb_cache  # noqa: E402

ENCODE_STAGES = ("image_encode", "text_encode", "train_encode")


def vlbench(*argv: str, env: dict) -> int:
    return subprocess.call([sys.executable, "-m", "harness", *argv], env=env)


def loglik(rec) -> list[float]:
    return [t["heldout_loglik"] for t in rec.options.get("probe_search", []) if t.get("heldout_loglik") is not None]


def proof(new: list, ref: dict) -> list[str]:
    """Problems with the claim that the perturbed embeddings were used (empty: proved)."""
    problems, served = [], 0
    for rec in new:
        name = f"{rec.model['name']} {rec.task}"
        stages = [rec.timings[s] for s in ENCODE_STAGES if s in rec.timings]
        served += sum(t.cached for t in stages)
        if rec.task == "linear_probe":
            if not all(t.cached for t in stages):
                problems.append(f"{name}: an encode stage was run again, not read from the perturbed cache")
            base = ref.get(check._key(check.identity(rec)))
            if base is None:
                problems.append(f"{name}: no unperturbed record to compare the probe with")
            elif loglik(base) == loglik(rec):
                problems.append(f"{name}: held-out log-likelihoods identical: the probe did not see the perturbation")
    print(f"perturb: {served} encode stage(s) of {len(new)} record(s) were served from the perturbed cache")
    return problems


def moves(new: list, ref: dict, baseline: dict) -> dict[tuple, float]:
    gated = {check._key(e): e["metrics"] for e in baseline["entries"]}
    out = {}
    for rec in new:
        key = check._key(check.identity(rec))
        base = ref.get(key)
        for metric in gated.get(key, {}):
            if base is not None and metric in rec.metrics and metric in base.metrics:
                out[(rec.model["name"], rec.task, metric)] = rec.metrics[metric] - base.metrics[metric]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", default="default")
    p.add_argument("--baseline", default=str(ROOT / "benchmarks/baselines/default.json"))
    p.add_argument("--reference", required=True, help="results of the unperturbed run (make bench)")
    p.add_argument("--cache", default=None, help="embedding cache to perturb (default: this run's, "
                   "$VLBENCH_EMBEDDINGS or $VLBENCH_CACHE/embeddings)")
    p.add_argument("--rel", type=float, default=1e-6, help="relative size of the perturbation (default 1e-6)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--model", action="append", default=[], help="only this model's runs (repeatable)")
    p.add_argument("--work", default=None, help="folder for the perturbed cache and results (default: temporary)")
    args = p.parse_args()

    src = Path(args.cache) if args.cache else cache_root()
    baseline = check.load_baseline(Path(args.baseline))
    ref = check.latest(check.load_records(Path(args.reference)))
    only = [a for m in args.model for a in ("--model", m)]
    worst: dict[tuple, float] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="vlbench-perturb-") as tmp:
        work = Path(args.work or tmp)
        for seed in args.seeds:
            cache, results = work / f"seed{seed}" / "embeddings", work / f"seed{seed}" / "results"
            stats = perturb_cache(src, cache, rel=args.rel, seed=seed)
            print(f"perturb: seed {seed}: {stats.entries} cache entries, {stats.chunks} chunks, {stats.values} values, "
                  f"largest relative change {stats.max_rel:.2e}", flush=True)
            env = {**os.environ, "VLBENCH_EMBEDDINGS": str(cache)}
            if vlbench("sweep", "--suite", args.suite, "--results", str(results), "--force", "--no-progress",
                       *only, env=env):
                return 1
            new = check.load_records(results)
            problems = proof(new, ref)
            for line in problems:
                print(f"perturb: {line}")
            code = vlbench("check", "--baseline", args.baseline, "--results", str(results), "--no-throughput",
                           *only, env=env)
            failed |= bool(problems) or code != 0
            for k, d in moves(new, ref, baseline).items():
                if abs(d) > abs(worst.get(k, 0.0)):
                    worst[k] = d
    print("perturb: gated metrics that moved (largest move over the seeds):")
    for (model, task, metric), d in sorted(worst.items()):
        if d:
            print(f"  {model:<22} {task:<18} {metric:<14} {d:+.4f}")
    print(json.dumps({"seeds": args.seeds, "rel": args.rel, "failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
