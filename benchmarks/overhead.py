"""Harness overhead: vlbench's encode throughput against a bare loop on the same model,
batch size, precision and device. Prints items/s of each and their ratio (target >= 0.95).

Three comparisons, best of ``--repeats`` runs each, harness and bare runs alternating:
  images, end to end   harness path (DataLoader, decode + preprocess, adapter, Stage timing)
                       vs a plain loop that decodes, preprocesses and calls encode_image;
  images, encode only  the adapter + Stage timing on preloaded pixels vs model.encode_image;
  texts                harness encode_texts (tokenise + encode + timing) vs a plain loop.

    .venv/bin/python benchmarks/overhead.py --model tiny-clip-synth --batch-size 64
    .venv/bin/python benchmarks/overhead.py --model open_clip:ViT-B-32 --precision bf16 --device cuda \
        --split train --limit 4096 --texts 4096 --batch-size 1024          # a GPU, random init

``--progress`` instead compares the harness with progress bars forced on against bars off
(images end to end, and texts): on and off alternate (on/off, off/on, ...) and each pair's
time ratio is kept, so load drifting on a shared machine hits both sides; the median of the
ratios is printed, with the time spent inside tqdm itself (constructor, update, redraws,
close) as a share of the stage's. Run it in a terminal (or under ``script``) so the bars
are really drawn; bars draw from the first batch here (no half-second delay).

    .venv/bin/python benchmarks/overhead.py --progress --limit 300 --repeats 9
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F


def best_rates(harness_fn, bare_fn, items: int, repeats: int) -> tuple[float, float]:
    """Best items/s of each side, the two run alternately (h, b, h, b, ...): on a shared
    machine the load drifts, and alternating exposes both sides to the same drift."""
    times: dict[str, list[float]] = {"h": [], "b": []}
    for _ in range(repeats):
        for side, fn in (("h", harness_fn), ("b", bare_fn)):
            t0 = time.perf_counter()
            fn()
            times[side].append(time.perf_counter() - t0)
    return items / min(times["h"]), items / min(times["b"])


def paired_ratios(on_fn, off_fn, repeats: int) -> tuple[list[float], list[float]]:
    """(wall, CPU) time of on / off per repeat, the order flipped every repeat (on, off, off,
    on, ...). The process's CPU time moves far less than wall time when other jobs share the
    cores, and the bars' own work is CPU work of this process."""
    wall, cpu = [], []
    for r in range(repeats):
        took = {}
        for side, fn in ((("on", on_fn), ("off", off_fn)) if r % 2 == 0 else (("off", off_fn), ("on", on_fn))):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            took[side] = (time.perf_counter() - t0, time.process_time() - c0)
        wall.append(took["on"][0] / took["off"][0])
        cpu.append(took["on"][1] / took["off"][1])
    return wall, cpu


class TqdmClock:
    """Wall and CPU seconds spent inside tqdm's own methods (drawing included) while installed.
    On a loaded machine wall time inside any code is inflated by waits for a core; the CPU
    time is the work the bars add."""

    def __init__(self):
        from tqdm import std

        self.cls, self.seconds, self.cpu, self.saved, self.depth = std.tqdm, 0.0, 0.0, {}, 0
        self.by_method: dict[str, float] = {}

    def __enter__(self):
        for name in ("__init__", "update", "close", "refresh"):
            orig = self.saved[name] = getattr(self.cls, name)
            setattr(self.cls, name, self._timed(orig, name))
        return self

    def _timed(self, fn, name: str):
        def timed(*a, **k):
            self.depth += 1
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                self.depth -= 1
                if self.depth == 0:  # update -> refresh counts once
                    dt = time.perf_counter() - t0
                    self.seconds += dt
                    self.cpu += time.thread_time() - c0
                    self.by_method[name] = self.by_method.get(name, 0.0) + dt

        return timed

    def __exit__(self, *exc):
        for name, fn in self.saved.items():
            setattr(self.cls, name, fn)


def progress_comparison(workloads, repeats: int, mininterval: float | None = None) -> None:
    import statistics
    from dataclasses import replace

    from harness.core import progress

    on = progress.ProgressPolicy(show=True, tty_delay=0.0)
    if mininterval is not None:
        on = replace(on, tty_mininterval=mininterval, file_mininterval=mininterval)
    off = progress.ProgressPolicy(show=False)
    print(f"progress bars on vs off, stderr a terminal: {progress.is_terminal(sys.stderr)}, "
          f"{repeats} interleaved pairs, redraw every {on.tty_mininterval}s at most", flush=True)
    for name, fn, items in workloads:
        def with_policy(policy, fn=fn):
            with progress.session(policy):
                fn()

        with_policy(off)  # warm-up
        on_wall, on_cpu = [0.0], [0.0]

        def timed_on():
            t0, c0 = time.perf_counter(), time.process_time()
            with_policy(on)
            on_wall[0] += time.perf_counter() - t0  # noqa: B023
            on_cpu[0] += time.process_time() - c0  # noqa: B023

        with TqdmClock() as clock:  # bars-off runs make no tqdm call: only the on runs are charged
            wall_r, cpu_r = paired_ratios(timed_on, lambda: with_policy(off), repeats)
        for what, ratios in (("wall", wall_r), ("CPU", cpu_r)):
            print(f"{name:<20} {items} items  on/off {what:>4} time: median {statistics.median(ratios):.4f} "
                  f"(min {min(ratios):.4f}, max {max(ratios):.4f})", flush=True)
        parts = ", ".join(f"{m} {t * 1e3:.1f}" for m, t in sorted(clock.by_method.items()))
        print(f"{name:<20} inside tqdm over the {repeats} on runs: wall {clock.seconds * 1e3:.1f} ms ({parts}) "
              f"of {on_wall[0]:.1f} s = {100 * clock.seconds / on_wall[0]:.3f}%; CPU {clock.cpu * 1e3:.1f} ms "
              f"of {on_cpu[0]:.1f} s = {100 * clock.cpu / on_cpu[0]:.3f}%", flush=True)


def _sync(device: str) -> None:
    """CUDA work is asynchronous: a bare loop's clock must wait for its kernels (the harness's
    Stage synchronises at its ends on its own)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def encode_ratios(args) -> list[dict]:
    """Harness vs bare items/s and their ratio for images end to end, images encode only and
    texts: one dict per comparison (also printed). ``args``: the options of :func:`parser`."""
    from harness.core.interfaces import LoadOptions, Precision
    from harness.core.measure import Stage, default_workers
    from harness.datasets import DatasetRequest, TaskKind, synthetic
    from harness.models import resolve
    from harness.models.common import autocast, torch_dtype
    from harness.tasks.encode import EncodeOptions, encode_images, encode_texts

    precision = Precision(args.precision)
    torch.manual_seed(0)  # a random-init open_clip model is the same model every run
    model = resolve(args.model).load(LoadOptions(device=args.device, precision=precision, weights=args.weights))
    net, dev, bs = model.model, args.device, args.batch_size
    dtype = torch_dtype(precision)
    data = synthetic.load(DatasetRequest(args.split, TaskKind.RETRIEVAL, limit=args.limit))
    workers = default_workers(args.device) if args.workers is None else args.workers
    opts = EncodeOptions(batch_size=bs, device=dev, num_workers=workers)
    tf = model.image_transform()
    n_img, texts = len(data.images), data.captions[:args.texts]

    def bare_image(px):  # what a user writes by hand: cast, (autocast), encode, normalise
        with torch.inference_mode(), autocast(dev, precision):
            return F.normalize(net.encode_image(px.to(dev, dtype=dtype, non_blocking=True)).float(), dim=-1)

    def harness_images():
        with Stage("image_encode", dev) as st:
            encode_images(model, data.images, opts, st)

    def bare_images_e2e():
        for s in range(0, n_img, bs):
            bare_image(torch.stack([tf(data.images.load(i)) for i in range(s, min(s + bs, n_img))]))
        _sync(dev)

    pixels = torch.stack([tf(data.images.load(i)) for i in range(n_img)])
    if dev.startswith("cuda"):
        pixels = pixels.pin_memory()  # as the harness's loader hands them over (pin_memory on CUDA)
    batches = [pixels[s:s + bs] for s in range(0, n_img, bs)]

    def harness_images_encode_only():
        with Stage("image_encode", dev) as st:
            for px in batches:
                with st.batch(len(px)):
                    model.encode_images(px)

    def bare_images_encode_only():
        for px in batches:
            bare_image(px)
        _sync(dev)

    def harness_texts():
        with Stage("text_encode", dev) as st:
            encode_texts(model, texts, opts, st)

    def bare_texts():
        with torch.inference_mode(), autocast(dev, precision):
            for s in range(0, len(texts), bs):
                F.normalize(net.encode_text(model.tokenize(texts[s:s + bs]).to(dev)).float(), dim=-1)
        _sync(dev)

    print(f"model {args.model}, batch {bs}, device {dev}, {precision.value}, harness workers {workers}, "
          f"torch threads {torch.get_num_threads()}, best of {args.repeats}", flush=True)
    rows = []
    for name, harness_fn, bare_fn, items in (
        ("images, end to end", harness_images, bare_images_e2e, n_img),
        ("images, encode only", harness_images_encode_only, bare_images_encode_only, n_img),
        ("texts", harness_texts, bare_texts, len(texts)),
    ):
        bare_fn()  # warm-up: lazy init, autotuning and allocator growth charged to neither side
        harness_fn()
        h, b = best_rates(harness_fn, bare_fn, items, args.repeats)
        print(f"{name:<20} harness {h:9.1f}/s   bare {b:9.1f}/s   ratio {h / b:.3f}", flush=True)
        rows.append({"comparison": name, "items": items, "harness_items_per_s": h, "bare_items_per_s": b,
                     "ratio": h / b, "model": args.model, "batch_size": bs, "device": dev,
                     "precision": precision.value, "workers": workers})
    return rows


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-clip-synth",
                    help="registered model or open_clip:ARCH (random init when no --weights), e.g. open_clip:ViT-B-32")
    ap.add_argument("--weights", default=None, help="local checkpoint for the model")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16", "amp"),
                    help="both sides: the harness's weights dtype / autocast, the bare loop the same")
    ap.add_argument("--split", default="test", help="synthetic split the images and captions come from "
                    "(train has 12,000 images: room for several batches of 1,024)")
    ap.add_argument("--workers", type=int, default=None, help="harness data-loader workers (default: auto)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="seeded subset of the split's images")
    ap.add_argument("--texts", type=int, default=None, help="encode only the first N captions")
    ap.add_argument("--progress", action="store_true",
                    help="compare progress bars on vs off (interleaved pairs, median ratio) instead")
    ap.add_argument("--mininterval", type=float, default=None,
                    help="with --progress: seconds between redraws (default: the policy's)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads for both sides (default: torch's; 1 is steadier on a busy machine)")
    ap.add_argument("--json", default=None, help="also write the comparisons to this JSON file")
    return ap


def main() -> None:
    args = parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.progress:
        progress_main(args)
        return
    rows = encode_ratios(args)
    if args.json:
        import json
        from pathlib import Path

        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


def progress_main(args) -> None:
    from harness.core.interfaces import LoadOptions
    from harness.core.measure import default_workers
    from harness.datasets import DatasetRequest, TaskKind, synthetic
    from harness.models import resolve
    from harness.tasks.encode import EncodeOptions, encode_images, encode_texts

    model = resolve(args.model).load(LoadOptions(device=args.device, weights=args.weights))
    data = synthetic.load(DatasetRequest(args.split, TaskKind.RETRIEVAL, limit=args.limit))
    workers = default_workers(args.device) if args.workers is None else args.workers
    opts = EncodeOptions(batch_size=args.batch_size, device=args.device, num_workers=workers)
    texts = data.captions[:args.texts]

    def harness_images():
        from harness.core.measure import Stage

        with Stage("image_encode", args.device) as st:
            encode_images(model, data.images, opts, st)

    def harness_texts():
        from harness.core.measure import Stage

        with Stage("text_encode", args.device) as st:
            encode_texts(model, texts, opts, st)

    print(f"model {args.model}, batch {args.batch_size}, device {args.device}, fp32, harness workers {workers}, "
          f"torch threads {torch.get_num_threads()}")
    progress_comparison([("images, end to end", harness_images, len(data.images)),
                         ("texts", harness_texts, len(texts))], args.repeats, args.mininterval)


if __name__ == "__main__":
    main()
