"""``vlbench verify --invariance``: the same small seeded subset run again with another batch
size, another embedding-cache chunk size and, where the model allows it, another precision;
every metric's change is reported.

A score that moves with the batch size is a defect (lmms-eval #236: batch size took an
accuracy from 69.56 to 58.70): padding leaking into an encoder, batch statistics, a batch
that straddles two chunks. Batch and chunk variants must leave every metric exactly where it
was (up to ``exact``, float noise in a mean), or the check fails; a precision variant is
reported against that precision's tolerance, not failed (lower precision flips near-ties). Runs go to a temporary
results folder and never read or write the
embedding cache, so each variant really encodes with its own batching.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.core.interfaces import Precision
from harness.run.runner import RunOptions, RunSpec, expand, run_one

# Absolute tolerance (metric units: points, ranks) for a precision variant's change. bf16 keeps
# 8 bits of mantissa: cosines move by ~1e-3, enough to swap near-tied items of a small subset.
PRECISION_TOLERANCE = {Precision.AMP: 2.0, Precision.BF16: 2.0, Precision.FP16: 1.0}


@dataclass(frozen=True)
class InvarianceOptions:
    limit: int = 100          # the seeded subset (--limit) every variant runs on
    seed: int = 0
    batch_size: int = 64      # the reference run's batch
    other_batch: int = 7      # odd: batches end at other items, the last one is short
    other_chunk: int = 30     # cache chunks of 30 items: batches are cut at chunk ends elsewhere
    precision: Precision | None = None  # None: amp on CPU, fp16 on CUDA
    device: str = "cpu"
    exact: float = 1e-9       # a batch/chunk variant's allowed change


@dataclass(frozen=True)
class Change:
    model: str
    task: str
    variant: str
    metric: str
    base: float | None
    value: float | None
    tolerance: float

    @property
    def delta(self) -> float | None:
        return None if self.base is None or self.value is None else self.value - self.base

    @property
    def ok(self) -> bool:
        d = self.delta
        return d is not None and math.isfinite(d) and abs(d) <= self.tolerance

    @property
    def precision(self) -> bool:
        return self.variant.startswith("precision")


@dataclass
class Outcome:
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # variants not run, and why

    @property
    def failed(self) -> list[Change]:
        """Batch or chunk variants that moved a score: a defect (exit 1)."""
        return [c for c in self.changes if not c.ok and not c.precision]

    @property
    def beyond_precision(self) -> list[Change]:
        """Precision variants past their tolerance: reported, not a failure. Lower precision
        moves near-tied scores (a random network's are nearly all ties), so on a small subset
        a few flipped items exceed any fixed number of points."""
        return [c for c in self.changes if not c.ok and c.precision]


def variants(opts: InvarianceOptions, base: RunOptions) -> list[tuple[str, RunOptions, float]]:
    """(name, run options, allowed change) of every variant."""
    precision = opts.precision or (Precision.FP16 if opts.device.startswith("cuda") else Precision.AMP)
    return [(f"batch_size {opts.other_batch}", replace(base, batch_size=opts.other_batch), opts.exact),
            (f"chunk_items {opts.other_chunk}", replace(base, chunk_items=opts.other_chunk), opts.exact),
            (f"precision {precision.value}", replace(base, precision=precision), PRECISION_TOLERANCE[precision])]


def specs_for(model: str, dataset: str, tasks: list[str] | None, split: str | None,
              base: RunOptions) -> tuple[list[RunSpec], list[str]]:
    """The runs of ``model`` on ``dataset``: the asked tasks the model can run (all of them when
    none is asked), and a note for each asked task it cannot."""
    from harness.tasks import TASKS

    runnable = expand(model, dataset, None, split, base)
    if not tasks:
        return runnable, []
    asked = [TASKS.resolve(t) for t in tasks]
    kept = [s for s in runnable if s.task in asked]
    notes = [f"{model}: {t} not run ({model} cannot run it on {dataset})" for t in asked
             if t not in {s.task for s in runnable}]
    return kept, notes


def check(models: list[str], dataset: str, tasks: list[str] | None = None, split: str | None = None,
          opts: InvarianceOptions = InvarianceOptions(), data_root: str | None = None,
          report=print) -> Outcome:
    base = RunOptions(batch_size=opts.batch_size, device=opts.device, seed=opts.seed, limit=opts.limit,
                      data_root=data_root, use_cache=False)
    out = Outcome()
    with tempfile.TemporaryDirectory(prefix="vlbench-invariance-") as tmp:
        for model in models:
            specs, notes = specs_for(model, dataset, tasks, split, base)
            out.notes += notes
            for spec in specs:
                ref = run_one(spec, Path(tmp) / "base", force=True).record
                for name, ropts, tol in variants(opts, spec.options):
                    try:
                        rec = run_one(replace(spec, options=ropts), Path(tmp) / name.replace(" ", "-"),
                                      force=True).record
                    except (ValueError, NotImplementedError) as exc:  # e.g. a precision the model refuses
                        if not name.startswith("precision"):
                            raise
                        out.notes.append(f"{model} {spec.task}: {name} not run ({exc})")
                        continue
                    label = _label(spec)
                    found = [Change(label, spec.task, name, m, v, rec.metrics.get(m), tol)
                             for m, v in sorted(ref.metrics.items())]
                    out.changes += found
                    report(_line(label, spec.task, name, found))
    return out


def _label(spec: RunSpec) -> str:
    k = spec.options.rerank_k
    return spec.model + (f" (rerank_k={k})" if k is not None else "")


def _line(model: str, task: str, variant: str, changes: list[Change]) -> str:
    moved = [c for c in changes if c.delta is None or c.delta != 0]
    bad = [c for c in changes if not c.ok]
    what = ("no change" if not moved else
            ", ".join(f"{c.metric} {c.base:.4g} -> {c.value if c.value is None else round(c.value, 4)}"
                      for c in moved[:6]) + (f" (+{len(moved) - 6} more)" if len(moved) > 6 else ""))
    verdict = ("beyond" if changes and changes[0].precision else "CHANGED") if bad else "ok"
    return f"{verdict:<8} {model:<28} {task:<18} {variant:<16} {len(changes)} metrics: {what}"


def summary(out: Outcome) -> str:
    lines = [f"note: {n}" for n in out.notes]
    runs = {(c.model, c.task, c.variant) for c in out.changes}
    bad = {(c.model, c.task, c.variant) for c in out.failed}
    beyond = {(c.model, c.task, c.variant) for c in out.beyond_precision}
    lines.append(f"invariance: {len(runs) - len(bad) - len(beyond)} variant run(s) within tolerance, "
                 f"{len(bad)} changed by batch or chunk size (a defect), {len(beyond)} precision run(s) past "
                 f"the precision's tolerance (reported) ({len(out.changes)} metric comparisons)")
    for c in out.failed + out.beyond_precision:
        lines.append(f"  {c.model} {c.task} {c.variant}: {c.metric} {c.base} -> {c.value} "
                     f"(allowed +-{c.tolerance:g})")
    return "\n".join(lines)
