"""How retrieval scoring grows with the data: wall time and peak memory.

Random unit-norm embeddings (scores of a real model would not change the cost), each
image with captions/images captions, recall@1/5/10 both directions through the same
streaming code the tasks use. Prints one line per size and the ratio of peak memory to
what the full queries x gallery matrix alone would take.

    .venv/bin/python benchmarks/scoring_scale.py --images 20000 --captions 100000 --dim 512
    .venv/bin/python benchmarks/scoring_scale.py --images 100000 --captions 500000 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch


def peak_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    from harness.core.measure import peak_rss_mb

    return peak_rss_mb()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    else:
        from harness.core.measure import reset_peak_rss

        reset_peak_rss()


def run(n_images: int, n_captions: int, dim: int, device: str, chunk: int, seed: int = 0) -> dict:
    from harness.metrics import functional as M

    g = torch.Generator(device="cpu").manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(n_images, dim, generator=g), dim=-1).to(device)
    txt = torch.nn.functional.normalize(torch.randn(n_captions, dim, generator=g), dim=-1).to(device)
    gt = (torch.arange(n_captions) % n_images).to(device)
    inputs_mb = (img.numel() + txt.numel()) * 4 / 2**20
    reset_peak(device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    t2i, i2t = M.retrieval_ranks(img, txt, gt, chunk_size=chunk)
    metrics = M.metrics_from_ranks(t2i, i2t)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    return {"images": n_images, "captions": n_captions, "dim": dim, "device": device, "chunk": chunk,
            "wall_s": wall, "peak_mb": peak_mb(device), "inputs_mb": inputs_mb,
            "full_matrix_mb": n_images * n_captions * 4 / 2**20, "rsum": metrics[M.MetricKey.RSUM]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--captions", type=int, default=100000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk", type=int, default=None,
                    help="queries per scoring chunk (default: sized to harness.metrics.functional.SCORING_BUDGET_BYTES)")
    ap.add_argument("--steps", type=int, default=3, help="also run 1/4, 1/2 ... of the size")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    for step in reversed(range(args.steps)):
        scale = 2 ** step
        r = run(args.images // scale, args.captions // scale, args.dim, args.device, args.chunk)
        print(f"{r['images']:>7} images x {r['captions']:>7} captions d={r['dim']}: {r['wall_s']:7.2f} s, "
              f"peak {'device' if args.device.startswith('cuda') else 'RSS'} {r['peak_mb']:8.1f} MB "
              f"(inputs {r['inputs_mb']:.0f} MB; full matrix would be {r['full_matrix_mb']:.0f} MB, "
              f"ratio {r['peak_mb'] / r['full_matrix_mb']:.3f})", flush=True)


if __name__ == "__main__":
    main()
