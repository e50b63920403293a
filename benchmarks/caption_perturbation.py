"""How far do the captioning suite's gated numbers move when the arithmetic does? The tolerances
of benchmarks/baselines/captioning.json are measured with this script, not guessed.

benchmarks/perturbation_check.py moves the embedding cache at float32 rounding level to mimic
another CPU's kernels; a captioner's output is not cached, so here the same idea is applied
to the generating network itself: every floating parameter of the captioner is multiplied by
``1 + rel * N(0, 1)`` (seeded) and the split is captioned again, and so it is at another batch
size (other BLAS blocking, other padding). A caption that changes moves every metric; the
script prints, per variant, how many of the captions changed and how far each corpus metric
moved (the Java-free PTB path, whose numbers equal the Java path's; METEOR as well when Java
runs and a caption changed). The judge's CLIP-S / RefCLIP-S move only with the judge's
embeddings, which benchmarks/perturbation_check.py already covers.

    python benchmarks/caption_perturbation.py                           # both tiny captioners, 1,000 images
    python benchmarks/caption_perturbation.py --model tiny-captioner-synth --seeds 0 1 2 --batch-sizes 7
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.core.interfaces import GenerateOptions, LoadOptions  # noqa: E402
from harness.datasets import DatasetRequest, resolve_dataset  # noqa: E402
from harness.datasets.base import TaskKind  # noqa: E402
from harness.metrics.captioning import BLEU_KEYS, evaluate_captions, java_missing  # noqa: E402
from harness.models import MODELS  # noqa: E402
from harness.tasks.captioning import generate_captions, references_of  # noqa: E402
from harness.tasks.encode import EncodeOptions  # noqa: E402

KEYS = (*BLEU_KEYS, "rouge_l", "cider")


def perturb(model, rel: float, seed: int) -> int:
    """Multiply every floating parameter and buffer of the captioner's network in place."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    moved = 0
    with torch.no_grad():
        for tensor in [*model.model.parameters(), *model.model.buffers()]:
            if tensor.is_floating_point():
                tensor.mul_(1 + rel * torch.randn(tensor.shape, generator=gen, dtype=tensor.dtype))
                moved += tensor.numel()
    return moved


def captions(name: str, images, batch_size: int, rel: float = 0.0, seed: int = 0) -> list[str]:
    model = MODELS.get(name).load(LoadOptions())
    if rel:
        perturb(model, rel, seed)
    gen = GenerateOptions(batch_size=batch_size)  # the suite's generation options (beam 3, 30 tokens)
    out, *_ = generate_captions(model, images, gen, EncodeOptions(batch_size=batch_size))
    return out


def scores(cands: list[str], refs: list[list[str]], with_meteor: bool) -> dict[str, float]:
    keys = (*KEYS, "meteor") if with_meteor else KEYS
    return evaluate_captions(cands, refs, keys, "python").corpus


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=[], help="captioner (default: both tiny captioners)")
    p.add_argument("--limit", type=int, default=None, help="a seeded subset of the test split (default: all)")
    p.add_argument("--rel", type=float, default=1e-6)
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[7], help="other batch sizes than the suite's 64")
    args = p.parse_args()
    data = resolve_dataset("synthetic").load(DatasetRequest("test", TaskKind.CAPTIONING, limit=args.limit))
    refs = references_of(data)
    java = java_missing() is None
    report = {}
    for name in args.model or ["tiny-captioner-synth", "tiny-captioner-random"]:
        t0 = time.perf_counter()
        base = captions(name, data.images, 64)
        base_scores = scores(base, refs, False)
        variants = {f"rel {args.rel:g} seed {s}": (64, args.rel, s) for s in args.seeds}
        variants |= {f"batch {b}": (b, 0.0, 0) for b in args.batch_sizes}
        rows = {}
        for label, (batch, rel, seed) in variants.items():
            other = captions(name, data.images, batch, rel, seed)
            changed = sum(a != b for a, b in zip(base, other))
            if changed and java and "meteor" not in base_scores:  # METEOR's JVM only when a caption moved
                base_scores = scores(base, refs, True)
            moved = scores(other, refs, "meteor" in base_scores) if changed else base_scores
            rows[label] = {"captions_changed": changed,
                           **{k: round(moved[k] - base_scores[k], 6) for k in base_scores}}
            print(f"{name:<22} {label:<20} {changed:>4} of {len(base)} captions changed  "
                  + "  ".join(f"{k} {rows[label][k]:+.4f}" for k in base_scores), flush=True)
        report[name] = {"images": len(base), "baseline": {k: round(v, 4) for k, v in base_scores.items()},
                        "variants": rows, "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
