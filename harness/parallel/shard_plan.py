"""Which rank does what in a run over several processes (see :mod:`harness.parallel.distributed`).

Every unit of work is one a single process also has, so every item is computed exactly as
there, and results are bit-identical whatever the number of ranks:

- encoding: the embedding cache's chunks, chunk ``i`` to rank ``i % world_size``; each rank
  stores its chunks in the shared cache and then receives the others' (:func:`exchange`);
- scoring: the query chunks of :func:`harness.metrics.functional.first_hit_ranks`, dealt the same way;
  a query's rank is computed by one rank, the others contribute 0 to a sum;
- with gallery slices (``--shard-gallery``, or automatically when the gallery is too big for
  :data:`MIN_QUERY_CHUNK` queries in the scoring budget) each rank scores every query against
  its contiguous slice of the gallery (:func:`harness.metrics.functional.sliced_first_hit_ranks`);
- cross-encoder reranking: the image batches of :func:`harness.tasks.pairs.score_pair_index`.

In one process every function here is the single-process code path.
"""

from __future__ import annotations

from dataclasses import replace

from harness.parallel import distributed as D

MIN_QUERY_CHUNK = 64  # fewer queries than this per scoring block: slice the gallery instead


def owns(index: int, ctx: D.DistContext | None = None) -> bool:
    """Unit ``index`` belongs to this rank (round robin).

    >>> owns(3, D.DistContext(rank=1, world_size=2)), owns(3, D.DistContext(rank=0, world_size=2))
    (True, False)
    """
    ctx = ctx or D.current()
    return index % ctx.world_size == ctx.rank


def slice_of(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous, balanced ``[start, end)`` of ``n`` items for ``rank`` of ``world``.

    >>> [slice_of(5, r, 2) for r in range(2)]
    [(0, 3), (3, 5)]
    """
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def rank0_first(fn):
    """``fn()`` on rank 0, then on the others: generated data is written once, then read."""
    ctx = D.current()
    if not ctx.active:
        return fn()
    if ctx.is_main:
        out = fn()
        D.barrier()
        return out
    D.barrier()
    return fn()


# ----------------------------------------------------------------- encoding


def my_ranges(entry) -> list[tuple[int, int]]:
    """The missing chunks of a cache entry this rank encodes."""
    ctx = D.current()
    return [r for r in entry.missing() if owns(r[0] // entry.chunk_items, ctx)]


def cached_share(entry, computed: list[tuple[int, int]]) -> int:
    """Items of this rank's chunks that it read from the cache rather than computed (a chunk
    another rank stored before this one opened the entry is that rank's, not a cache hit)."""
    ctx = D.current()
    if not ctx.active:
        return entry.info.cached_items
    owned = sum(end - start for start, end in (entry.range_of(i) for i in range(entry.n_chunks) if owns(i, ctx)))
    return owned - sum(e - s for s, e in computed)


def exchange(entry) -> None:
    """After each rank filled its chunks: every rank gets the chunks it lacks from their owner."""
    ctx = D.current()
    if not ctx.active:
        return
    mine = {i: t for i, t in entry.chunks().items() if owns(i, ctx)}
    for part in D.gather_objects({i: {n: v.cpu() for n, v in t.items()} for i, t in mine.items()}):
        for index, tensors in part.items():
            entry.adopt(index, tensors)


# ----------------------------------------------------------------- scoring


def use_gallery_slices(n_gallery: int, requested: bool) -> bool:
    from harness.metrics.functional import auto_chunk

    return D.current().active and (requested or auto_chunk(n_gallery) < MIN_QUERY_CHUNK)


def retrieval_ranks(image_emb, text_emb, caption_to_image, shard_gallery: bool = False):
    """:func:`harness.metrics.functional.retrieval_ranks`, split over the ranks; every rank gets all ranks."""
    from harness.metrics import functional as M

    ctx = D.current()
    if not ctx.active:
        return M.retrieval_ranks(image_emb, text_emb, caption_to_image)
    if use_gallery_slices(max(len(image_emb), len(text_emb)), shard_gallery):
        return M.sliced_retrieval_ranks(image_emb, text_emb, caption_to_image,
                                        lambda n: slice_of(n, ctx.rank, ctx.world_size), D.all_reduce)
    t2i, i2t = M.retrieval_ranks(image_emb, text_emb, caption_to_image, owned=lambda i: owns(i, ctx))
    return D.all_reduce(t2i.cpu()), D.all_reduce(i2t.cpu())


def pair_batches_owned():
    """Predicate on image-batch index for :func:`harness.tasks.pairs.score_pair_index`; None alone."""
    ctx = D.current()
    return (lambda i: owns(i, ctx)) if ctx.active else None


def gather_scores(scores):
    """Pair scores: each computed by one rank, zeros elsewhere; x + 0.0 is exact."""
    return D.all_reduce(scores) if D.current().active else scores


# ----------------------------------------------------------------- timings


SHARDED_STAGES = ("image_encode", "text_encode", "rerank")  # the others run on every rank


def merge_timings(timings: dict) -> tuple[dict, dict | None]:
    """(record timings, per-rank description). A sharded stage (:data:`SHARDED_STAGES`) counts
    the items of every rank's chunks (computed or read from the cache), and its items/s is the
    sum of the ranks' measured rates (they ran at the same time); any other stage ran on every
    rank (or split its queries and waited for the others): rank 0's items over the slowest
    rank's seconds. Seconds are the slowest rank's."""
    ctx = D.current()
    if not ctx.active:
        return timings, None
    import socket
    from dataclasses import asdict

    mine = {"rank": ctx.rank, "host": socket.gethostname(),
            "timings": {k: asdict(v) for k, v in timings.items()}}
    ranks = D.gather_objects(mine)
    merged = {}
    for name, own in timings.items():
        per = [r["timings"][name] for r in ranks if name in r["timings"]]
        seconds = max(p["seconds"] for p in per)
        if name in SHARDED_STAGES:
            rates = [p["items_per_s"] for p in per if p["items_per_s"] is not None]
            items, cached = sum(p["items"] for p in per), sum(p["cached_items"] for p in per)
            reused = sum(p.get("reused_items", 0) for p in per)
            rate = sum(rates) if rates and not reused else None  # a rank that reused features: no speed
            own = replace(own, cached_items=cached, cached=items == cached and cached > 0, reused_items=reused)
        else:
            items = own.items
            rate = None if own.items_per_s is None else (items / seconds if seconds > 0 else 0.0)
        merged[name] = replace(own, seconds=seconds, items=items, items_per_s=rate)
    return merged, {**ctx.describe(), "ranks": ranks}
