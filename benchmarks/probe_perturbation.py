"""How far does a linear probe move when its embeddings move at float32 rounding level?

Refits the probe of one model on the synthetic split's cached image embeddings (the entries a
``vlbench run --task linear_probe`` left in the embedding cache), unperturbed and then with
every value multiplied by ``1 + rel * N(0, 1)`` for each seed, and prints the chosen C and the
eval metrics of each fit (benchmarks/RESULTS.md, "The gate on another x86 CPU").

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/probe_perturbation.py --model tiny-clip-random --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cached_embeddings(root: Path, model: str, split: str, batch_size: int):
    """The cached image embeddings of ``model`` on the synthetic ``split`` (all chunks, in order)."""
    import torch
    from safetensors.torch import load_file

    for manifest in sorted(root.glob("*/manifest.json")):
        m = json.loads(manifest.read_text())
        k = m["key"]
        if (k.get("kind"), k.get("model"), k.get("dataset"), k.get("split"), k.get("batch_size")) == (
                "images", model, "synthetic", split, batch_size):
            chunks = [m["chunks"][i]["file"] for i in sorted(m["chunks"], key=int)]
            return torch.cat([load_file(manifest.parent / f)["embedding"] for f in chunks])
    raise SystemExit(f"no cached {split} embeddings of {model} under {root}: run "
                     f"`vlbench run --model {model} --dataset synthetic --task linear_probe --split test` first")


def main() -> int:
    import torch

    from harness.datasets import DATASETS, DatasetRequest
    from harness.metrics import functional as M
    from harness.metrics.probe import ProbeOptions, fit_probe
    from harness.results.cache import cache_root
    from harness.tasks import TASKS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rel", type=float, default=1e-6)
    p.add_argument("--batch-size", type=int, default=64, help="the batch size the run encoded with (cache key)")
    args = p.parse_args()

    data = DATASETS.get("synthetic").load(DatasetRequest(split="test", task=TASKS.get("linear_probe").kind))
    ytrain, ytest = torch.tensor(data.train.labels), torch.tensor(data.eval.labels)
    train = cached_embeddings(cache_root(), args.model, "train", args.batch_size)
    test = cached_embeddings(cache_root(), args.model, "test", args.batch_size)
    for seed in [None, *args.seeds]:
        xt, xe = train.clone(), test.clone()
        if seed is not None:
            g = torch.Generator().manual_seed(seed)
            xt = xt * (1 + args.rel * torch.randn(xt.shape, generator=g))
            xe = xe * (1 + args.rel * torch.randn(xe.shape, generator=g))
        started = time.perf_counter()
        probe = fit_probe(xt, ytrain, len(data.eval.classnames), ProbeOptions())
        got = M.classification_metrics(probe.logits(xe), ytest)
        print(f"seed {'-' if seed is None else seed}: C {probe.c:g} "
              + " ".join(f"{k.value} {float(v):.3f}" for k, v in got.items())
              + f" ({time.perf_counter() - started:.1f}s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
