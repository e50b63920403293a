"""A whole ``vlbench run`` process against its floor: a bare process that loads the same
model with the same loader and encodes the same images and captions with the adapter's own
calls, batched the same way (texts longest first), and nothing else.

Both are timed from process start to exit as subprocesses, interleaved. What the ratio
charges to the harness: its imports beyond torch and the model's library, argument and
registry work, dataset listing and checks, the run key (weight digests), DataLoader and
Stage overhead, scoring, writing the record and sidecar, and interpreter exit. The harness
record's own stage times give the issue's view too (``extra.stage_floor_ratio`` = wall /
(model_load + image_encode + text_encode)).

    python -m harness.gate.perf.process SPEC.json    # the bare reference process
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the folder holding the harness package


def _env(extra_path: str | None = None) -> dict:
    path = [p for p in (extra_path, str(ROOT), os.environ.get("PYTHONPATH")) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "HF_HUB_OFFLINE": "1", "VLBENCH_OFFLINE": "1"}


def timed_run(cmd: list[str], env: dict, cwd: str | Path | None = None) -> tuple[float, float]:
    """(wall seconds, user + system CPU seconds) of one subprocess from start to exit; a
    non-zero exit raises RuntimeError with the command and the end of its stderr."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, cwd=cwd)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _timed(cmd: list[str], env: dict) -> float:
    return timed_run(cmd, env)[0]


def vlbench_command(o, results: Path) -> list[str]:
    cmd = [sys.executable, "-m", "harness", "run", "--model", o.model, "--dataset", o.dataset, "--task", "retrieval",
           "--limit", str(o.items), "--batch-size", str(o.batch_size), "--workers", "0", "--device", "cpu",
           "--precision", "fp32", "--no-cache", "--force", "--results", str(results)]
    for flag, value in (("--split", o.split), ("--weights", o.weights), ("--data-root", o.data_root)):
        if value:
            cmd += [flag, str(value)]
    return cmd


def write_spec(o, path: Path) -> Path:
    """The items the bare process encodes: the run's own seeded subset, listed once here."""
    from harness.datasets import DATASETS, DatasetRequest, TaskKind

    meta = DATASETS.get(o.dataset)
    data = meta.load(DatasetRequest(split=o.split or meta.default_split, task=TaskKind.RETRIEVAL,
                                    data_root=o.data_root, limit=o.items, seed=0))
    spec = {"model": o.model, "weights": o.weights, "batch_size": o.batch_size,
            "images": [str(p) for p in data.images.paths], "captions": list(data.captions)}
    path.write_text(json.dumps(spec), encoding="utf-8")
    return path


def whole_process(o, plant_path: str | None = None):
    """Interleaved wall times of ``vlbench run`` and the bare process; ``plant_path`` is put
    first on the vlbench side's PYTHONPATH (tests plant a slowdown there via sitecustomize)."""
    from dataclasses import asdict, replace

    from harness.gate.perf.interleave import interleaved

    with tempfile.TemporaryDirectory(prefix="vlbench-perf-") as tmp:
        spec = write_spec(o, Path(tmp) / "spec.json")
        results = Path(tmp) / "results"
        run_cmd, bare_cmd = vlbench_command(o, results), [sys.executable, "-m", "harness.gate.perf.process", str(spec)]
        m = interleaved("process", lambda: _timed(run_cmd, _env(plant_path)), lambda: _timed(bare_cmd, _env()),
                        o.repeats, 1, warmup=o.warmup, params=asdict(o))
        return replace(m, extra=_stage_view(results, m.harness_s))


FLOOR_STAGES = ("model_load", "image_encode", "text_encode")  # issue 15's floor of a whole run


def stage_floor(stage_seconds: dict) -> float:
    """Seconds of the floor stages (those a record lacks count 0)."""
    return sum(stage_seconds.get(k, 0.0) for k in FLOOR_STAGES)


def latest_record(results: Path) -> dict | None:
    """The newest record under ``results`` as raw JSON (``store.iter_record_files``: no
    sidecars, nothing in flight); None when there is none."""
    from harness.results.store import iter_record_files

    recs = iter_record_files(results) if results.is_dir() else []
    return json.loads(max(recs, key=lambda p: p.stat().st_mtime).read_text()) if recs else None


def _stage_view(results: Path, wall: float) -> dict:
    """The last record's stage seconds and the issue's ratio: wall / (load + encode)."""
    rec = latest_record(results)
    if rec is None:
        return {}
    t = rec["timings"]
    stages = {k: t[k]["seconds"] for k in (*FLOOR_STAGES, "scoring", "data_load") if k in t}
    floor = stage_floor(stages)
    return {"stages_s": stages, "stage_floor_s": floor, "stage_floor_ratio": wall / floor if floor else None}


def bare_main(spec_path: str) -> None:
    """Model load + bare encode of the spec's images and captions, nothing written."""
    import torch
    from PIL import Image

    from harness.core.interfaces import LoadOptions
    from harness.models import resolve

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    torch.manual_seed(0)
    model = resolve(spec["model"]).load(LoadOptions(device="cpu", weights=spec["weights"]))
    tf, bs, paths, texts = model.image_transform(), spec["batch_size"], spec["images"], spec["captions"]
    for s in range(0, len(paths), bs):
        model.encode_images(torch.stack([tf(Image.open(p).convert("RGB")) for p in paths[s:s + bs]]))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)  # the harness's batching
    for s in range(0, len(order), bs):
        model.encode_texts(model.tokenize([texts[i] for i in order[s:s + bs]]))


if __name__ == "__main__":
    from harness.core.process_exit import fast_exit

    bare_main(sys.argv[1])
    fast_exit(0)  # as `vlbench run` ends: the floor is not charged the interpreter's teardown
