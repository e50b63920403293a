"""What the parts of benchmarks/gpu_check.py share: the sizes of a GPU run and of the CPU dry
run, and the :class:`Recorder` a part writes its figures and checks into.

A part runs in its own process; its recorder rewrites the part's JSON file after every
figure, so a part that fails or is killed at its timeout still hands back what it measured.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
for _p in (str(ROOT), str(BENCHMARKS)):  # harness and the sibling benchmark scripts, wherever started
    if _p not in sys.path:
        sys.path.insert(0, _p)

# verdicts: a figure against its target ("meets"/"misses": the figure is reported either way),
# a check of a CUDA path ("pass"/"FAIL": a FAIL fails the part and the script)
MEETS, MISSES, PASS, FAIL, SKIPPED = "meets", "misses", "pass", "FAIL", "skipped"


class Skip(Exception):
    """A part that cannot run here: the reason is reported, the part is not a failure."""


@dataclass(frozen=True)
class Sizes:
    """Everything a part sizes itself by. :data:`GPU` is the run the issue asks for (about 5 min
    on one H100-class GPU); :data:`DRY` the same script on CPU at sizes that take seconds."""

    encode_model: str = "open_clip:ViT-B-32"   # random init: weights do not change speed
    encode_precisions: tuple[str, ...] = ("bf16", "fp32")
    encode_batches: tuple[int, ...] = (256, 1024)
    encode_split: str = "train"                 # 12,000 synthetic images (test has 1,000)
    encode_images: int = 2048                   # 2 batches of 1,024; the bare loop decodes them at ~1.5 ms each
    encode_texts: int = 4096
    encode_repeats: int = 3
    score_images: int = 100_000
    score_captions: int = 500_000
    score_check: tuple[int, int] = (5_000, 25_000)  # images x captions scored on the GPU and on the CPU
    vs_arch: str = "ViT-B-32"
    vs_limit: int | None = None                 # None: the whole dev split, 1,000 images
    vs_batch: int = 256
    vs_workers: int = 8
    vs_precision: str = "amp"                   # CLIP_benchmark's own default
    vs_repeats: int = 2
    tiny_models: tuple[str, ...] = ("tiny-clip-synth", "tiny-clip-random")
    # 500 of the synthetic test split's 1,000 images (2,500 captions): the CPU reference runs of
    # the tiny CLIPs cost ~7 ms of CPU an image and 3-7 ms a caption
    tiny_limit: int | None = 500
    precisions: tuple[str, ...] = ("fp16", "bf16", "amp")
    # the sync plant shows as the GPU time per batch over the host's (decode + preprocess, ~1.5 ms
    # an image at 224 px): ViT-B-16 fp32 (17.6 GFLOP an image) makes that ~25%, ViT-B-32 only ~6%
    plant_model: str = "open_clip:ViT-B-16"
    plant_items: int = 600
    plant_batch: int = 200
    plant_repeats: int = 3
    dist_model: str = "tiny-clip-synth"
    dist_limit: int | None = 256

    def model_names(self) -> list[str]:
        """Every model these sizes load (the dry run resolves the GPU run's names)."""
        return sorted({self.encode_model, self.plant_model, self.dist_model, f"open_clip:{self.vs_arch}",
                       *self.tiny_models})


GPU = Sizes()
DRY = Sizes(encode_model="tiny-clip-synth", encode_batches=(8,), encode_split="test", encode_images=16,
            encode_texts=16, encode_repeats=1, score_images=2_000, score_captions=10_000, score_check=(300, 1_500),
            vs_arch="ViT-S-32", vs_limit=16, vs_batch=8, vs_workers=0, vs_precision="fp32", vs_repeats=1,
            tiny_models=("tiny-clip-synth",), tiny_limit=16, precisions=("bf16", "amp"),
            plant_model="tiny-clip-synth", plant_items=16, plant_batch=8, plant_repeats=1, dist_limit=16)


def device_for(dry_run: bool) -> str:
    return "cpu" if dry_run else "cuda"


class Recorder:
    """The figures and checks of one part, rewritten to ``path`` (JSON) after each one."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.rows: list[dict] = []
        self.notes: list[str] = []

    def figure(self, name: str, value, unit: str = "", target: str = "", verdict: str = "", detail: str = "") -> None:
        self.rows.append({"figure": name, "value": _plain(value), "unit": unit, "target": target,
                          "verdict": verdict, "detail": detail})
        print(f"  {name}: {_fmt(value)} {unit}".rstrip() + (f"  [{verdict}: {target}]" if verdict else "")
              + (f"  ({detail})" if detail else ""), flush=True)
        self._write()

    def against(self, name: str, value, unit: str, target: str, ok: bool, detail: str = "") -> None:
        """A measured figure and whether it meets its target (reported either way)."""
        self.figure(name, value, unit, target, MEETS if ok else MISSES, detail)

    def check(self, name: str, value, unit: str, expected: str, ok: bool, detail: str = "") -> bool:
        """An asserted number of a CUDA path: a FAIL fails the part; the part goes on."""
        self.figure(name, value, unit, expected, PASS if ok else FAIL, detail)
        return ok

    def skipped(self, name: str, why: str) -> None:
        """A check this machine cannot make (a CUDA-only one in the dry run), named."""
        self.figure(name, None, "", "", SKIPPED, why)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)
        self._write()

    @property
    def failed(self) -> list[str]:
        return [r["figure"] for r in self.rows if r["verdict"] == FAIL]

    def _write(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"rows": self.rows, "notes": self.notes}, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)  # the driver never reads half a file, even after a kill


def read_part_file(path: Path) -> dict:
    """What a part wrote (empty when it wrote nothing)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"rows": [], "notes": []}
    return raw if isinstance(raw, dict) else {"rows": [], "notes": []}


def _plain(v):
    """JSON without NaN/Infinity (the project's rule for every record)."""
    import math

    return None if isinstance(v, float) and not math.isfinite(v) else v


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.0f}"
    return str(v)
