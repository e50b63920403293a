"""Harness overhead: vlbench's encode throughput against a bare loop on the same model,
batch size, precision and device. Prints items/s of each and their ratio (target >= 0.95).

Three comparisons, best of ``--repeats`` runs each, harness and bare runs alternating:
  images, end to end   harness path (DataLoader, decode + preprocess, adapter, Stage timing)
                       vs a plain loop that decodes, preprocesses and calls encode_image;
  images, encode only  the adapter + Stage timing on preloaded pixels vs model.encode_image;
  texts                harness encode_texts (tokenise + encode + timing) vs a plain loop.

    .venv/bin/python benchmarks/overhead.py --model tiny-clip-synth --batch-size 64
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny-clip-synth")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=None, help="harness data-loader workers (default: auto)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="seeded subset of the test split's images")
    ap.add_argument("--texts", type=int, default=None, help="encode only the first N captions")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads for both sides (default: torch's; 1 is steadier on a busy machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from harness.datasets import DatasetRequest, TaskKind, synthetic
    from harness.interfaces import LoadOptions
    from harness.measure import Stage, default_workers
    from harness.models import resolve
    from harness.tasks.encode import EncodeOptions, encode_images, encode_texts

    model = resolve(args.model).load(LoadOptions(device=args.device))
    net, dev, bs = model.model, args.device, args.batch_size
    data = synthetic.load(DatasetRequest("test", TaskKind.RETRIEVAL, limit=args.limit))
    workers = default_workers(args.device) if args.workers is None else args.workers
    opts = EncodeOptions(batch_size=bs, device=dev, num_workers=workers)
    tf = model.image_transform()
    n_img, texts = len(data.images), data.captions[:args.texts]

    def harness_images():
        with Stage("image_encode", dev) as st:
            encode_images(model, data.images, opts, st)

    def bare_images_e2e():
        with torch.inference_mode():
            for s in range(0, n_img, bs):
                px = torch.stack([tf(data.images.load(i)) for i in range(s, min(s + bs, n_img))])
                F.normalize(net.encode_image(px.to(dev)).float(), dim=-1)

    pixels = torch.stack([tf(data.images.load(i)) for i in range(n_img)])
    batches = [pixels[s:s + bs] for s in range(0, n_img, bs)]

    def harness_images_encode_only():
        with Stage("image_encode", dev) as st:
            for px in batches:
                with st.batch(len(px)):
                    model.encode_images(px)

    def bare_images_encode_only():
        with torch.inference_mode():
            for px in batches:
                F.normalize(net.encode_image(px.to(dev)).float(), dim=-1)

    def harness_texts():
        with Stage("text_encode", dev) as st:
            encode_texts(model, texts, opts, st)

    def bare_texts():
        with torch.inference_mode():
            for s in range(0, len(texts), bs):
                F.normalize(net.encode_text(model.tokenize(texts[s:s + bs]).to(dev)).float(), dim=-1)

    print(f"model {args.model}, batch {bs}, device {dev}, fp32, harness workers {workers}, "
          f"torch threads {torch.get_num_threads()}, best of {args.repeats}")
    for name, harness_fn, bare_fn, items in (
        ("images, end to end", harness_images, bare_images_e2e, n_img),
        ("images, encode only", harness_images_encode_only, bare_images_encode_only, n_img),
        ("texts", harness_texts, bare_texts, len(texts)),
    ):
        bare_fn()  # warm-up: lazy init and allocator growth charged to neither side
        h, b = best_rates(harness_fn, bare_fn, items, args.repeats)
        print(f"{name:<20} harness {h:9.1f}/s   bare {b:9.1f}/s   ratio {h / b:.3f}", flush=True)


if __name__ == "__main__":
    main()
