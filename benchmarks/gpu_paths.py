"""Every CUDA code path of vlbench once, with asserted numbers (parts of benchmarks/gpu_check.py):

    cuda_vs_cpu   retrieval + zero-shot of the tiny CLIPs on the device equal their CPU numbers;
                  a Stage's CUDA-synchronised wall time and per-stage max_memory_allocated
    precisions    --precision fp16 | bf16 | amp: the dtypes recorded are the dtypes computed in,
                  and the numbers stay within the precision's tolerance of fp32 on the CPU
    oom_backoff   a planted out-of-memory (a real allocation too big for the device) halves the
                  batch, is recorded, and the numbers are still the CPU's
    one_rank      under torchrun, a run inside a one-rank NCCL process group (every collective
                  of harness.parallel.distributed on the device) equals the single process

In the dry run the same code runs on the CPU (the "device" is the CPU: bf16/amp, a raised
out-of-memory error, gloo); each check that needs CUDA is recorded as skipped, by name.

    python benchmarks/gpu_paths.py --one-rank ...   # what the one_rank part starts under torchrun
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from gpu_figures import BENCHMARKS, DRY, GPU, ROOT, Recorder, Sizes, device_for

# Largest difference of any metric (percentage points) from fp32 on the CPU. fp32 on CUDA
# differs by rounding (and TF32 in cuDNN convolutions), which moves a near-tied query by a
# place; half precision moves more. On 500 synthetic test images one query is 0.04 points
# (text -> image, 2,500 captions) or 0.2 (image -> text).
TOLERANCE_POINTS = {"fp32": 0.5, "amp": 2.0, "fp16": 2.0, "bf16": 3.0}
# What each precision must compute in: (weights dtype, autocast dtype or None), per device type
EXPECTED_DTYPES = {
    "cuda": {"fp16": ("float16", None), "bf16": ("bfloat16", None), "amp": ("float32", "float16")},
    "cpu": {"bf16": ("bfloat16", None), "amp": ("float32", "bfloat16")},
}
TASKS = ["retrieval", "zeroshot"]


def run_tiny(model: str, sizes: Sizes, results: Path, **options) -> dict:
    """{task: ResultRecord} of one model's retrieval and zero-shot runs on the synthetic test
    split, in this process, through the runner a `vlbench run` uses."""
    from harness.core.interfaces import Precision
    from harness.run.runner import RunOptions, expand, run_one

    if "precision" in options:
        options["precision"] = Precision(options["precision"])
    opts = RunOptions(limit=sizes.tiny_limit, use_cache=False, **options)
    return {spec.task: run_one(spec, results, force=True).record
            for spec in expand(model, "synthetic", TASKS, "test", opts)}


def largest_difference(a: dict, b: dict) -> tuple[float, str]:
    """(largest |a - b| over the metrics of every task, where): records by task."""
    worst, where = 0.0, "-"
    for task, rec in a.items():
        for k, v in rec.metrics.items():
            d = abs(v - b[task].metrics[k])
            if d > worst:
                worst, where = d, f"{task} {k}"
    return worst, where


def cuda_vs_cpu(rec: Recorder, sizes: Sizes, dry_run: bool) -> None:
    dev = device_for(dry_run)
    with tempfile.TemporaryDirectory(prefix="gpu-paths-") as tmp:
        for model in sizes.tiny_models:
            ref = run_tiny(model, sizes, Path(tmp) / "cpu")
            got = run_tiny(model, sizes, Path(tmp) / dev, device=dev)
            worst, where = largest_difference(got, ref)
            tol = TOLERANCE_POINTS["fp32"]
            rec.check(f"{model} retrieval + zeroshot fp32 on {dev} vs CPU: largest metric difference", worst,
                      "points", f"<= {tol}", worst <= tol, where)
            enc = got["retrieval"].timings["image_encode"]
            if dev.startswith("cuda"):
                peak = enc.peak_device_mem_mb
                rec.check(f"{model} on cuda: image_encode peak_device_mem_mb recorded", peak, "MB", "> 0",
                          peak is not None and peak > 0, f"latency p50 {enc.latency_ms.get('p50')} ms")
            else:
                rec.skipped(f"{model}: image_encode peak_device_mem_mb recorded", "needs CUDA")
    if dev.startswith("cuda"):
        stage_sync_and_memory(rec)
    else:
        rec.skipped("Stage on cuda: wall time waits for the kernels; peak memory per stage", "needs CUDA")


SPIN_CYCLES = 200_000_000  # torch.cuda._sleep: 100 ms at 2 GHz, 580 ms at an idle 345 MHz clock


def stage_sync_and_memory(rec: Recorder) -> None:
    """A Stage around GPU work the host does not wait for (a kernel that spins 200M clock
    cycles, at least 100 ms at any clock): its wall time must cover the spin (the Stage
    synchronises at its end) and its batch latency (CUDA events) must see it; a 256 MiB tensor
    allocated inside shows in that stage's peak memory and not in the next stage's
    (reset_peak_memory_stats at each stage's start)."""
    import torch

    from harness.core.measure import Stage

    torch.cuda._sleep(1000)  # load the kernel outside the measured stage
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated() / 2**20
    with Stage("probe", "cuda", warmup=0) as st:
        with st.batch(1):
            torch.cuda._sleep(SPIN_CYCLES)  # returns at once; the GPU spins
            held = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
        del held
    t = st.timing()
    lat = t.latency_ms.get("p50", 0.0)
    rec.check("Stage on cuda around a GPU spin: batch latency (CUDA events)", lat, "ms", ">= 50", lat >= 50)
    wall_ms = t.seconds * 1e3
    rec.check("Stage on cuda: wall time / event latency (the stage waits for the GPU)", wall_ms / max(lat, 1e-9), "x",
              ">= 0.95", wall_ms >= 0.95 * lat, f"wall {wall_ms:.1f} ms")
    grew = (t.peak_device_mem_mb or 0.0) - base
    rec.check("Stage on cuda: peak memory over the start, a 256 MiB tensor inside", grew, "MB", ">= 256", grew >= 256)
    with Stage("after", "cuda", warmup=0) as st2:
        torch.zeros(1, device="cuda")
    grew2 = (st2.timing().peak_device_mem_mb or 0.0) - base
    rec.check("Stage on cuda: the next stage's peak over the same start (reset at its start)", grew2, "MB", "< 64",
              grew2 < 64)


def precisions(rec: Recorder, sizes: Sizes, dry_run: bool) -> None:
    dev = device_for(dry_run)
    kind = "cuda" if dev.startswith("cuda") else "cpu"
    model = sizes.tiny_models[0]
    with tempfile.TemporaryDirectory(prefix="gpu-prec-") as tmp:
        ref = run_tiny(model, sizes, Path(tmp) / "cpu")
        for precision in sizes.precisions:
            weights, autocast = EXPECTED_DTYPES[kind][precision]
            got = run_tiny(model, sizes, Path(tmp) / precision, device=dev, precision=precision)
            opts = got["retrieval"].options
            recorded = (opts.get("weights_dtype"), opts.get("autocast"))
            rec.check(f"--precision {precision} on {dev}: recorded (weights, autocast) dtypes", str(recorded), "",
                      str((weights, autocast)), recorded == (weights, autocast))
            computed = computed_dtypes(model, dev, precision)
            want = (f"torch.{weights}", f"torch.{autocast or weights}", "torch.float32")
            rec.check(f"--precision {precision} on {dev}: (parameters, image tower output, embeddings) dtypes",
                      str(computed), "", str(want), computed == want)
            worst, where = largest_difference(got, ref)
            tol = TOLERANCE_POINTS[precision]
            rec.check(f"{model} --precision {precision} on {dev} vs fp32 on CPU: largest metric difference", worst,
                      "points", f"<= {tol}", worst <= tol, where)
    if kind == "cpu":
        fp16_refused(rec, model, sizes)
        rec.skipped("--precision fp16 on a GPU", "needs CUDA (fp16 is refused on CPU, checked above)")


def computed_dtypes(model_name: str, device: str, precision: str) -> tuple[str, str, str]:
    """(parameters, the image tower's raw output, the adapter's embeddings) dtypes of one
    batch through the adapter: what the model really computed in, not what was written down."""
    import torch

    from harness.core.interfaces import LoadOptions, Precision
    from harness.models import resolve

    model = resolve(model_name).load(LoadOptions(device=device, precision=Precision(precision)))
    seen = {}

    def look(module, inputs, output) -> None:  # returns None: the output is left as it is
        seen.setdefault("out", output.dtype)

    hook = model.model.visual.register_forward_hook(look)
    try:
        px = torch.stack([model.image_transform()(_blank_image())] * 2)
        emb = model.encode_images(px)
    finally:
        hook.remove()
    return str(next(model.model.parameters()).dtype), str(seen.get("out")), str(emb.dtype)


def _blank_image():
    from PIL import Image

    return Image.new("RGB", (64, 64), (120, 40, 200))


def fp16_refused(rec: Recorder, model: str, sizes: Sizes) -> None:
    try:
        run_tiny(model, sizes, Path(tempfile.mkdtemp(prefix="gpu-fp16-")), device="cpu", precision="fp16")
        msg = "accepted"
    except ValueError as exc:
        msg = str(exc)
    rec.check("--precision fp16 on cpu: refused, naming CUDA", msg[:60], "", "an error naming CUDA", "CUDA" in msg)


@contextlib.contextmanager
def planted_oom(device: str, fits: int):
    """The open_clip adapter's encode_images runs out of memory on batches of more than
    ``fits`` images. On CUDA the error is real: each batch first allocates 0.9 x len(batch) /
    fits of the memory the allocator can get (free plus what it holds cached), so ``fits``
    images take 90% of it and twice as many ask for 180%: the allocator itself raises
    torch.OutOfMemoryError. On CPU (dry run) the error is raised, not allocated.
    """
    import torch

    from harness.models.clip import OpenClipDualEncoder

    original = OpenClipDualEncoder.encode_images
    cuda = device.startswith("cuda")
    per_item = int((torch.cuda.mem_get_info()[0] + torch.cuda.memory_reserved()) * 0.9 / fits) if cuda else 0

    def encode_images(self, pixels):
        if cuda:
            hog = torch.empty(len(pixels) * per_item, dtype=torch.uint8, device=self.device)
            del hog  # freed at once (kept cached by the allocator for the next batch)
        elif len(pixels) > fits:
            raise torch.cuda.OutOfMemoryError(f"planted (dry run): batch {len(pixels)} > {fits}")
        return original(self, pixels)

    OpenClipDualEncoder.encode_images = encode_images
    try:
        yield
    finally:
        OpenClipDualEncoder.encode_images = original


def oom_backoff(rec: Recorder, sizes: Sizes, dry_run: bool) -> None:
    import warnings

    dev = device_for(dry_run)
    model, batch = sizes.tiny_models[0], 16
    with tempfile.TemporaryDirectory(prefix="gpu-oom-") as tmp:
        ref = run_tiny(model, sizes, Path(tmp) / "cpu", batch_size=batch)
        with planted_oom(dev, fits=6), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = run_tiny(model, sizes, Path(tmp) / "oom", device=dev, batch_size=batch)
    enc = got["retrieval"].timings["image_encode"]
    rec.check(f"planted out-of-memory on {dev}: back-offs recorded (image_encode)", enc.oom_backoffs, "", ">= 2",
              enc.oom_backoffs >= 2, f"{sum('out of memory' in str(w.message) for w in caught)} warnings")
    rec.check(f"planted out-of-memory on {dev}: batch_size_final", enc.batch_size_final, "",
              f"<= {batch // 4} (asked {batch})", (enc.batch_size_final or batch) <= batch // 4)
    rec.check("planted out-of-memory: options.oom_backoffs of the record", got["retrieval"].options["oom_backoffs"],
              "", ">= 2", got["retrieval"].options["oom_backoffs"] >= 2)
    worst, where = largest_difference(got, ref)
    tol = TOLERANCE_POINTS["fp32"]
    rec.check(f"planted out-of-memory on {dev} vs CPU: largest metric difference", worst, "points", f"<= {tol}",
              worst <= tol, where)


def one_rank(rec: Recorder, sizes: Sizes, dry_run: bool) -> None:
    """torchrun --nproc_per_node 1 of :func:`one_rank_main`, which writes the figures."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           str(BENCHMARKS / "gpu_paths.py"), "--one-rank", "--record", str(rec.path)]
    if dry_run:
        cmd.append("--dry-run")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
           "VLBENCH_DIST_TIMEOUT": "120", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "4")}
    print("  $ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def one_rank_main(record: str, dry_run: bool) -> int:
    """Under torchrun (WORLD_SIZE=1): the run as one process, then the same run inside a
    one-rank process group. vlbench itself treats WORLD_SIZE=1 as one process, so the group
    is joined here, the way harness.parallel.distributed.from_env joins one (NCCL on CUDA, gloo on CPU),
    and every collective of the run then goes through it."""
    import torch

    from harness.cli.main import main as vlbench

    rec = Recorder(record)
    sizes = DRY if dry_run else GPU
    dev = device_for(dry_run)
    if os.environ.get("WORLD_SIZE") != "1" or "MASTER_PORT" not in os.environ:
        raise SystemExit("gpu_paths.py --one-rank runs under torchrun --nproc_per_node 1")
    with tempfile.TemporaryDirectory(prefix="gpu-rank-") as tmp:
        args = ["run", "--model", sizes.dist_model, "--dataset", "synthetic", "--split", "test", "--task", "retrieval",
                "--task", "zeroshot", "--device", dev, "--chunk-items", "32", "--no-cache", "--force"]
        if sizes.dist_limit:
            args += ["--limit", str(sizes.dist_limit)]
        if vlbench([*args, "--results", f"{tmp}/single"]) != 0:
            raise SystemExit("the single-process run failed")
        backend = "nccl" if dev.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))  # NCCL's objects live on this device
        join_one_rank_group(backend)
        if vlbench([*args, "--results", f"{tmp}/group"]) != 0:  # its cmd_run shuts the group down
            raise SystemExit(f"the run in a one-rank {backend} group failed")
        single, group = _records(Path(tmp) / "single"), _records(Path(tmp) / "group")
    same = sorted(single) == sorted(group) and all(single[k][0] == group[k][0] for k in single)
    rec.check(f"{sizes.dist_model} in a one-rank {backend} group on {dev} vs one process: metrics", same, "",
              "identical", same and len(single) == len(TASKS), f"{len(single)} records")
    sidecars = all(single[k][1] == group[k][1] and single[k][1] for k in single)
    rec.check(f"one-rank {backend} group: every per-query rank and answer", sidecars, "", "identical", sidecars)
    backends = sorted({g[2] for g in group.values()})
    rec.check("one-rank group: dist_backend recorded", ",".join(map(str, backends)), "", backend, backends == [backend])
    if backend == "gloo":
        rec.skipped("one-rank group with NCCL", "needs CUDA (ran with gloo on CPU)")
    return 1 if rec.failed else 0


def _records(root: Path) -> dict:
    import json

    from harness.results.store import iter_record_files, queries_path

    out = {}
    for path in iter_record_files(root):
        r = json.loads(path.read_text())
        side = queries_path(path)
        out[(r["task"], path.name)] = (r["metrics"], json.loads(side.read_text()) if side.exists() else None,
                                       r["options"].get("dist_backend"))
    return out


def join_one_rank_group(backend: str):
    """Join a process group of one with ``backend`` (the launcher's MASTER_ADDR/PORT, as
    harness.parallel.distributed.from_env does) and make it this process's context, counted as active:
    every collective then runs through the backend instead of being skipped."""
    import socket

    from harness.parallel import distributed as D

    class OneRankGroup(D.DistContext):
        @property
        def active(self) -> bool:
            return True

    D._init_group(backend, 0, 1, os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"])
    ctx = OneRankGroup(rank=0, world_size=1, local_rank=0, backend=backend)
    D._current = ctx
    ctx.peers = [tuple(p) for p in D.gather_objects((socket.gethostname(), os.getpid()))]
    return ctx


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one-rank", action="store_true", required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()
    from harness.core.process_exit import fast_exit

    code = one_rank_main(a.record, a.dry_run)
    sys.stdout.flush()
    fast_exit(code)
