"""Retrieval scoring with the gallery split over ranks (``--shard-gallery``) vs one process.

Random unit-norm embeddings as in scoring_scale.py (each image with captions/images
captions). One process runs :func:`harness.metrics.functional.retrieval_ranks`; then N gloo ranks
(torch.multiprocessing, as torchrun would start them on one host) each hold the queries and
ONLY their slice of the gallery and run :func:`harness.metrics.functional.sliced_retrieval_ranks`
(a max all-reduce of best positive scores, a sum all-reduce of counts). Prints whether every
per-query rank is identical, wall time, and peak scoring memory: the growth of peak RSS over
the resident inputs while scoring (the scoring blocks), per process.

    .venv/bin/python benchmarks/scoring_sharded.py --images 20000 --captions 100000 --ranks 2
"""

from __future__ import annotations

import argparse
import os
import socket
import time

import torch


def embeddings(n_images: int, n_captions: int, dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    img = torch.nn.functional.normalize(torch.randn(n_images, dim, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(n_captions, dim, generator=g), dim=-1)
    return img, txt, torch.arange(n_captions) % n_images


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmRSS:"))


def measure(fn) -> tuple[object, float, float]:
    """(result, wall s, peak RSS growth MB) of ``fn()``."""
    from harness.core.measure import peak_rss_mb, reset_peak_rss

    reset_peak_rss()
    base = _rss_mb()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, peak_rss_mb() - base


def _rank(rank: int, world: int, port: int, args, queue) -> None:
    import torch.distributed as dist

    from harness.metrics import functional as M
    from harness.parallel import shard_plan

    torch.set_num_threads(max(1, args.threads // world))
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    img, txt, gt = embeddings(args.images, args.captions, args.dim)
    # keep only this rank's gallery slices beside the queries: what a rank would hold
    a, b = shard_plan.slice_of(len(img), rank, world)
    c, d = shard_plan.slice_of(len(txt), rank, world)
    img_slice, txt_slice = img[a:b].clone(), txt[c:d].clone()

    def reduce(t, op):
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return t

    def score():
        ch_t2i, ch_i2t = M.auto_chunk(len(img)), M.auto_chunk(len(txt))
        queried = torch.arange(len(img))  # every image has captions here
        t2i = M.sliced_first_hit_ranks(txt, img_slice, gt, torch.arange(a, b), ch_t2i, reduce)
        i2t = M.sliced_first_hit_ranks(img[queried], txt_slice, queried, gt[c:d], ch_i2t, reduce)
        return t2i, i2t

    (t2i, i2t), wall, mem = measure(score)
    queue.put((rank, wall, mem, (img_slice.numel() + txt_slice.numel()) * 4 / 2**20,
               (t2i, i2t) if rank == 0 else None))
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--captions", type=int, default=100000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    from harness.metrics import functional as M

    torch.set_num_threads(args.threads)
    img, txt, gt = embeddings(args.images, args.captions, args.dim)
    (ref, wall, mem) = measure(lambda: M.retrieval_ranks(img, txt, gt))  # noqa: F821
    gallery_mb = (img.numel() + txt.numel()) * 4 / 2**20
    print(f"{args.images} images x {args.captions} captions d={args.dim}, torch {torch.__version__}")
    print(f"1 process, {args.threads} threads: {wall:7.2f} s, peak scoring memory {mem:7.1f} MB "
          f"(gallery embeddings held {gallery_mb:.0f} MB), rsum {M.metrics_from_ranks(*ref)[M.MetricKey.RSUM]:.4f}", flush=True)
    del img, txt

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [ctx.Process(target=_rank, args=(r, args.ranks, port, args, queue)) for r in range(args.ranks)]
    for p in procs:
        p.start()
    got = sorted((queue.get() for _ in procs), key=lambda x: x[0])
    for p in procs:
        p.join()
    t2i, i2t = got[0][4]
    same = torch.equal(t2i, ref[0]) and torch.equal(i2t, ref[1])
    for rank, wall_r, mem_r, held, _ in got:
        print(f"rank {rank}/{args.ranks}, {max(1, args.threads // args.ranks)} thread(s): {wall_r:7.2f} s, "
              f"peak scoring memory {mem_r:7.1f} MB ({mem_r / mem:.2f}x one process; gallery slices held "
              f"{held:.0f} MB)")
    print(f"every per-query rank identical: {same} "
          f"(t2i {len(t2i)}, i2t {len(i2t)}; rsum {M.metrics_from_ranks(t2i, i2t)[M.MetricKey.RSUM]:.4f})")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
