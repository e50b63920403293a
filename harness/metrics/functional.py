"""Metrics: pure functions on torch tensors (no model code, no I/O).

Conventions (docs/architecture.md, "Conventions"): retrieval recall@k is the CLIP / CLIP_benchmark
hit rate, ranks are 1-based ranks of the first correct item, and ties never count in the
model's favour (a wrong item scoring equal to the correct one is ranked above it).
Scoring streams over query chunks (and optionally gallery chunks), so no full
queries x gallery matrix is ever held. Everything runs in float32 on the inputs' device.
"""

from __future__ import annotations

import torch

from harness.metrics import confusion
from harness.metrics.keys import MetricKey  # re-exported: its home is torch-free (the leaderboard uses it)

__all__ = [
    "MetricKey", "first_hit_ranks", "retrieval_ranks", "recall_from_ranks", "median_rank",
    "retrieval_metrics", "pessimistic_predictions", "per_sample_correct",
    "classification_metrics", "classification_metrics_from_preds", "topk_candidates",
    "reranked_first_hit_ranks", "sliced_first_hit_ranks", "sliced_retrieval_ranks",
]


# ----------------------------------------------------------------------------- retrieval

def _spans(n: int, size: int | None) -> list[tuple[int, int]]:
    size = n if not size or size >= n else size
    return [(s, min(s + size, n)) for s in range(0, max(n, 1), max(size, 1))]


# Scoring memory per (query, gallery) pair in one block at its peak: the fp32 scores, a
# masked fp32 copy, and the bool match / comparison masks.
BYTES_PER_SCORE = 12
SCORING_BUDGET_BYTES = 256 * 2**20


def auto_chunk(gallery_block: int, budget_bytes: int = SCORING_BUDGET_BYTES) -> int:
    """Queries per chunk so that one chunk x gallery block stays within ``budget_bytes``.

    >>> auto_chunk(100_000)  # 20k images x 100k captions: 223 queries at a time, ~256 MiB
    223
    """
    return max(1, min(8192, budget_bytes // (BYTES_PER_SCORE * max(1, gallery_block))))


def first_hit_ranks(query_emb: torch.Tensor, gallery_emb: torch.Tensor,
                    query_labels: torch.Tensor, gallery_labels: torch.Tensor,
                    chunk_size: int | None = None, gallery_chunk: int | None = None,
                    owned=None) -> torch.Tensor:
    """1-based rank of the best-scoring correct gallery item for each query, pessimistic.

    Gallery item ``j`` is correct for query ``i`` iff ``query_labels[i] == gallery_labels[j]``.
    Score = dot product. With ``t`` = best correct score of a query, its rank is
    ``1 + #(wrong items with score >= t)``: wrong items tied with ``t`` rank above it;
    other correct items never count (``t`` is their maximum). Queries are processed
    ``chunk_size`` at a time (None: as many as fit :data:`SCORING_BUDGET_BYTES`, see
    :func:`auto_chunk`) and the gallery ``gallery_chunk`` items at a time (None: whole
    gallery); with several gallery chunks each block is scored twice (a max pass, then a
    count pass) so the threshold and the counts come from bit-identical scores.
    Every query needs at least one correct item (ValueError otherwise). With ``owned``
    (query-chunk index -> bool) only those chunks are ranked, the others' ranks are 0: the
    ranks of a process group's members then add up to the single-process ranks.

    >>> q = torch.tensor([[1., 0.], [0., 1.]])
    >>> g = torch.tensor([[1., 0.], [0., 1.], [0., 1.]])
    >>> first_hit_ranks(q, g, torch.tensor([0, 1]), torch.tensor([0, 1, 2])).tolist()
    [1, 2]
    """
    dev = query_emb.device
    q, g = query_emb.float(), gallery_emb.to(dev).float()
    ql, gl = query_labels.to(dev), gallery_labels.to(dev)
    if q.shape[0] != ql.shape[0] or g.shape[0] != gl.shape[0]:
        raise ValueError("labels must have one entry per embedding row")
    if not (torch.isfinite(q).all() and torch.isfinite(g).all()):  # NaN compares False:
        raise ValueError("embeddings contain NaN or inf")          # it would flatter ranks
    gspans = _spans(g.shape[0], gallery_chunk)
    if chunk_size is None:
        chunk_size = auto_chunk(max(b - a for a, b in gspans))
    ranks = torch.zeros(q.shape[0], dtype=torch.long, device=dev)

    def block(qs: slice, gs: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        scores = q[qs] @ g[gs[0]:gs[1]].T
        return scores, ql[qs, None] == gl[None, gs[0]:gs[1]]

    for index, (q0, q1) in enumerate(_spans(q.shape[0], chunk_size)):
        if owned is not None and not owned(index):
            continue
        qs = slice(q0, q1)
        cached = block(qs, gspans[0]) if len(gspans) == 1 else None
        thr = torch.full((q1 - q0,), float("-inf"), device=dev)
        for gs in gspans:
            scores, pos = cached if cached is not None else block(qs, gs)
            thr = torch.maximum(thr, scores.masked_fill(~pos, float("-inf")).amax(1))
        if torch.isneginf(thr).any():
            bad = q0 + int(torch.isneginf(thr).nonzero()[0])
            raise ValueError(f"query {bad} has no correct gallery item")
        count = torch.zeros(q1 - q0, dtype=torch.long, device=dev)
        for gs in gspans:
            scores, pos = cached if cached is not None else block(qs, gs)
            count += ((scores >= thr[:, None]) & ~pos).sum(1)
        ranks[qs] = count + 1
    return ranks


def retrieval_ranks(image_emb: torch.Tensor, text_emb: torch.Tensor,
                    caption_to_image: torch.Tensor, chunk_size: int | None = None,
                    gallery_chunk: int | None = None, owned=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query 1-based ranks ``(t2i_ranks (M,), i2t_ranks (N',))``, pessimistic on ties.

    Text->image: every caption is a query over all N images (images without captions
    stay in the gallery as distractors). Image->text: every image with >= 1 caption is a
    query over all M captions (N' such images, in index order); its rank is that of its
    best-ranked caption.

    >>> img = torch.tensor([[1., 0.], [0., 1.], [.8, .6]])  # image 2 has no caption
    >>> txt = torch.tensor([[1., 0.], [.6, .8], [.8, .6]])
    >>> t2i, i2t = retrieval_ranks(img, txt, torch.tensor([0, 1, 1]))
    >>> t2i.tolist(), i2t.tolist()
    ([1, 2, 3], [1, 1])
    """
    c2i, image_ids, queried = _retrieval_labels(image_emb, text_emb, caption_to_image)
    t2i = first_hit_ranks(text_emb, image_emb, c2i, image_ids, chunk_size, gallery_chunk, owned)
    i2t = first_hit_ranks(image_emb[queried.to(image_emb.device)], text_emb, queried, c2i,
                          chunk_size, gallery_chunk, owned)
    return t2i, i2t


def _retrieval_labels(image_emb, text_emb, caption_to_image):
    """(caption_to_image, image ids, images with >= 1 caption), checked."""
    c2i = caption_to_image.to(text_emb.device).long()
    n = image_emb.shape[0]
    if c2i.ndim != 1 or c2i.shape[0] != text_emb.shape[0] or c2i.shape[0] == 0:
        raise ValueError("caption_to_image must be a non-empty (M,) tensor matching text_emb")
    if int(c2i.min()) < 0 or int(c2i.max()) >= n:
        raise ValueError(f"caption_to_image values must lie in [0, {n})")
    return c2i, torch.arange(n, device=c2i.device), torch.bincount(c2i, minlength=n).nonzero().squeeze(1)


def _no_reduce(tensor: torch.Tensor, op: str) -> torch.Tensor:
    return tensor


def sliced_first_hit_ranks(query_emb: torch.Tensor, gallery_slice: torch.Tensor,
                           query_labels: torch.Tensor, slice_labels: torch.Tensor, chunk_size: int,
                           all_reduce=_no_reduce) -> torch.Tensor:
    """:func:`first_hit_ranks` when each process holds one slice of the gallery.

    A query's rank is ``1 + #(wrong items scoring >= t)`` with ``t`` its best correct score
    over the whole gallery: each slice contributes its best correct score (``all_reduce(x,
    "max")`` gives ``t``) and then its count of wrong items at or above ``t`` (``all_reduce(x,
    "sum")``), so the rank is exact, ties counted against the model. ``all_reduce`` is the
    identity in one process (one slice = the whole gallery); ``chunk_size`` queries are scored
    at a time, so each block is the single-process block restricted to the slice.

    >>> q = torch.tensor([[1., 0.], [0., 1.]])
    >>> g = torch.tensor([[1., 0.], [0., 1.], [0., 1.]])
    >>> sliced_first_hit_ranks(q, g, torch.tensor([0, 1]), torch.tensor([0, 1, 2]), 2).tolist()
    [1, 2]
    """
    dev = query_emb.device
    q, g = query_emb.float(), gallery_slice.to(dev).float()
    ql, gl = query_labels.to(dev), slice_labels.to(dev)
    if not (torch.isfinite(q).all() and torch.isfinite(g).all()):
        raise ValueError("embeddings contain NaN or inf")
    spans = _spans(q.shape[0], chunk_size)
    thr = torch.full((q.shape[0],), float("-inf"), device=dev)
    for q0, q1 in spans:
        scores = q[q0:q1] @ g.T
        thr[q0:q1] = scores.masked_fill(ql[q0:q1, None] != gl[None, :], float("-inf")).amax(1) \
            if g.shape[0] else thr[q0:q1]
    thr = all_reduce(thr, "max")
    if torch.isneginf(thr).any():
        raise ValueError(f"query {int(torch.isneginf(thr).nonzero()[0])} has no correct gallery item")
    count = torch.zeros(q.shape[0], dtype=torch.long, device=dev)
    for q0, q1 in spans:
        scores = q[q0:q1] @ g.T
        count[q0:q1] = ((scores >= thr[q0:q1, None]) & (ql[q0:q1, None] != gl[None, :])).sum(1)
    return all_reduce(count, "sum") + 1


def sliced_retrieval_ranks(image_emb: torch.Tensor, text_emb: torch.Tensor,
                           caption_to_image: torch.Tensor, slice_of, all_reduce=_no_reduce,
                           chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`retrieval_ranks` with each process scoring its gallery slice ``slice_of(n) ->
    (start, end)`` of the images (text->image) and of the captions (image->text); query chunks
    as the whole gallery's (:func:`auto_chunk`) unless ``chunk_size`` is given.

    >>> img = torch.tensor([[1., 0.], [0., 1.], [.8, .6]])
    >>> txt = torch.tensor([[1., 0.], [.6, .8], [.8, .6]])
    >>> [r.tolist() for r in sliced_retrieval_ranks(img, txt, torch.tensor([0, 1, 1]), lambda n: (0, n))]
    [[1, 2, 3], [1, 1]]
    """
    c2i, image_ids, queried = _retrieval_labels(image_emb, text_emb, caption_to_image)
    a, b = slice_of(image_emb.shape[0])
    t2i = sliced_first_hit_ranks(text_emb, image_emb[a:b], c2i, image_ids[a:b],
                                 chunk_size or auto_chunk(image_emb.shape[0]), all_reduce)
    a, b = slice_of(text_emb.shape[0])
    i2t = sliced_first_hit_ranks(image_emb[queried.to(image_emb.device)], text_emb[a:b], queried, c2i[a:b],
                                 chunk_size or auto_chunk(text_emb.shape[0]), all_reduce)
    return t2i, i2t


def topk_candidates(query_emb: torch.Tensor, gallery_emb: torch.Tensor, k: int,
                    chunk_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best gallery items per query by dot product: ``(scores, indices)``, (Q, k).

    Streams over query chunks (top-k on the inputs' device), so memory is bounded by one
    chunk x gallery block. ``k`` larger than the gallery is clipped to the gallery size.
    Equal scores are ordered by gallery index (a stable, documented order).

    >>> q = torch.tensor([[1., 0.], [0., 1.]])
    >>> g = torch.tensor([[.5, .5], [1., 0.], [0., 1.]])
    >>> s, i = topk_candidates(q, g, 2)
    >>> i.tolist(), s.tolist()
    ([[1, 0], [2, 0]], [[1.0, 0.5], [1.0, 0.5]])
    """
    q, g = query_emb.float(), gallery_emb.to(query_emb.device).float()
    k = min(k, g.shape[0])
    chunk_size = chunk_size or auto_chunk(g.shape[0])
    scores = torch.empty(q.shape[0], k, device=q.device)
    index = torch.empty(q.shape[0], k, dtype=torch.long, device=q.device)
    for q0, q1 in _spans(q.shape[0], chunk_size):
        block = q[q0:q1] @ g.T
        # a stable descending sort keeps ties in gallery order; topk does not promise that
        order = block.sort(dim=1, descending=True, stable=True)
        scores[q0:q1], index[q0:q1] = order.values[:, :k], order.indices[:, :k]
    return scores, index


def reranked_first_hit_ranks(candidates: torch.Tensor, rerank_scores: torch.Tensor,
                             prefilter_scores: torch.Tensor, query_labels: torch.Tensor,
                             gallery_labels: torch.Tensor,
                             fallback_ranks: torch.Tensor) -> torch.Tensor:
    """1-based first-hit ranks after reranking each query's candidate list, pessimistic.

    Candidates are ordered by rerank score, ties broken by prefilter score (so a constant
    reranker keeps the prefilter's order); items equal on both keys rank wrong-first. A
    query whose candidates hold no correct item keeps its ``fallback_ranks`` entry (its
    prefilter rank, which is beyond the candidate list).

    >>> cand = torch.tensor([[0, 1, 2], [2, 0, 1]])        # gallery ids per query
    >>> rr = torch.tensor([[.1, .9, .5], [.3, .3, .3]])    # reranker scores
    >>> pre = torch.tensor([[.9, .8, .7], [.9, .8, .7]])   # prefilter scores (descending)
    >>> reranked_first_hit_ranks(cand, rr, pre, torch.tensor([1, 0]), torch.arange(3),
    ...                          torch.tensor([9, 9])).tolist()
    [1, 2]
    """
    dev = candidates.device
    correct = gallery_labels.to(dev)[candidates] == query_labels.to(dev)[:, None]
    rr, pre = rerank_scores.float().to(dev), prefilter_scores.float().to(dev)
    if not (torch.isfinite(rr).all() and torch.isfinite(pre).all()):
        raise ValueError("rerank or prefilter scores contain NaN or inf")
    # the best correct candidate under the (rerank, prefilter) lexicographic order
    neg = torch.tensor(float("-inf"), device=dev)
    best_rr = torch.where(correct, rr, neg).amax(1, keepdim=True)
    at_best = correct & (rr == best_rr)
    best_pre = torch.where(at_best, pre, neg).amax(1, keepdim=True)
    above = (rr > best_rr) | ((rr == best_rr) & (pre >= best_pre))
    ranks = (above & ~correct).sum(1) + 1
    return torch.where(correct.any(1), ranks, fallback_ranks.to(dev).long())


def recall_from_ranks(ranks: torch.Tensor, k: int) -> float:
    """Recall@k as a hit rate in percent: share of queries with rank <= k.

    >>> recall_from_ranks(torch.tensor([1, 2, 7, 1]), 1)
    50.0
    """
    return 100.0 * (ranks <= k).double().mean().item()


def median_rank(ranks: torch.Tensor) -> float:
    """Median rank, floored: ``floor(np.median(ranks))`` of 1-based ranks.

    This equals VSE++/SCAN's ``np.floor(np.median(ranks0)) + 1`` on 0-based ranks, so an
    even-length list averages its two middle values and rounds down.

    >>> median_rank(torch.tensor([4, 1, 2, 9]))
    3.0
    """
    s = ranks.sort().values
    n = s.shape[0]
    return float((int(s[(n - 1) // 2]) + int(s[n // 2])) // 2)


def retrieval_metrics(image_emb: torch.Tensor, text_emb: torch.Tensor,
                      caption_to_image: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10),
                      chunk_size: int | None = None,
                      gallery_chunk: int | None = None) -> dict[MetricKey, float]:
    """t2i/i2t R@k (percent), RSUM (sum of the reported recalls), median and mean rank.

    ``ks`` must be among 1, 5, 10 (the record keys). Median: see :func:`median_rank`.

    >>> img = torch.tensor([[1., 0.], [0., 1.], [.8, .6]])  # image 2 has no caption
    >>> txt = torch.tensor([[1., 0.], [.6, .8], [.8, .6]])
    >>> m = retrieval_metrics(img, txt, torch.tensor([0, 1, 1]), ks=(1,))
    >>> round(m[MetricKey.T2I_R1], 2), m[MetricKey.I2T_R1], round(m[MetricKey.RSUM], 2)
    (33.33, 100.0, 133.33)
    >>> m[MetricKey.T2I_MEDR], m[MetricKey.T2I_MEANR], m[MetricKey.I2T_MEANR]
    (2.0, 2.0, 1.0)
    """
    t2i, i2t = retrieval_ranks(image_emb, text_emb, caption_to_image, chunk_size,
                               gallery_chunk)
    return metrics_from_ranks(t2i, i2t, ks)


def metrics_from_ranks(t2i: torch.Tensor, i2t: torch.Tensor,
                       ks: tuple[int, ...] = (1, 5, 10)) -> dict[MetricKey, float]:
    """The retrieval metrics from per-query first-hit ranks (what the tasks store, so the
    leaderboard can bootstrap without re-running a model).

    ``mean_R@1`` is the mean of the two R@1, the retrieval score DataComp ranks by (Gadre et
    al. 2023, its evaluation suite: mean of image and text retrieval recall@1).

    >>> m = metrics_from_ranks(torch.tensor([1, 2, 7]), torch.tensor([1, 1]), ks=(1, 5))
    >>> round(m[MetricKey.T2I_R5], 2), m[MetricKey.I2T_R1], round(m[MetricKey.RSUM], 2)
    (66.67, 100.0, 300.0)
    >>> round(m[MetricKey.MEAN_R1], 2)  # (33.33 + 100) / 2
    66.67
    """
    out: dict[MetricKey, float] = {}
    for name, ranks in (("t2i", t2i), ("i2t", i2t)):
        for k in ks:
            out[MetricKey(f"{name}_R@{k}")] = recall_from_ranks(ranks, k)
        out[MetricKey(f"{name}_medr")] = median_rank(ranks)
        out[MetricKey(f"{name}_meanr")] = ranks.double().mean().item()
    out[MetricKey.RSUM] = sum(out[MetricKey(f"{d}_R@{k}")] for d in ("t2i", "i2t") for k in ks)
    if 1 in ks:
        out[MetricKey.MEAN_R1] = (out[MetricKey.T2I_R1] + out[MetricKey.I2T_R1]) / 2
    return out


# ------------------------------------------------------------------------ classification

def _check_labels(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    labels = labels.to(scores.device).long()
    if scores.ndim != 2 or labels.shape != (scores.shape[0],):
        raise ValueError("expected scores (N, C) and labels (N,)")
    if torch.isnan(scores).any():  # NaN compares False and would flatter top-k hits
        raise ValueError("scores contain NaN")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= scores.shape[1]):
        raise ValueError(f"labels must lie in [0, {scores.shape[1]})")
    return labels


def per_sample_correct(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> torch.Tensor:
    """Top-k hit per sample (BoolTensor (N,)), pessimistic on ties.

    A sample hits iff fewer than k OTHER classes score >= its label's score; with
    C < k every sample hits.

    >>> s = torch.tensor([[.9, .1, .0], [.5, .5, .0], [.2, .3, .5]])
    >>> per_sample_correct(s, torch.tensor([0, 0, 1])).tolist()
    [True, False, False]
    >>> per_sample_correct(s, torch.tensor([0, 0, 1]), k=2).tolist()
    [True, True, True]
    """
    labels = _check_labels(logits, labels)
    s = logits.float()
    own = s.gather(1, labels[:, None])
    others = (s >= own).sum(1) - 1  # the label column always satisfies >=; drop it
    return others < k


def pessimistic_predictions(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Argmax prediction where ties never favour the model.

    Among the top-scoring classes, the lowest-index WRONG class is predicted when there
    is one; the label only when it is the unique maximum. This keeps ``acc1`` equal to
    the accuracy of these predictions (plain argmax would pick the lowest index and could
    credit a tie to the model).

    >>> s = torch.tensor([[.5, .5, .0], [.1, .7, .7], [.1, .8, .1]])
    >>> pessimistic_predictions(s, torch.tensor([0, 2, 1])).tolist()
    [1, 1, 1]
    """
    labels = _check_labels(logits, labels)
    s = logits.float()
    at_top_wrong = s == s.amax(1, keepdim=True)
    at_top_wrong[torch.arange(s.shape[0], device=s.device), labels] = False
    # argmax returns the first maximal index, i.e. the lowest tied wrong class
    return torch.where(at_top_wrong.any(1), at_top_wrong.int().argmax(1), labels)


def classification_metrics_from_preds(preds: torch.Tensor, labels: torch.Tensor,
                                      num_classes: int | None = None) -> dict[MetricKey, float]:
    """Macro-F1 and balanced accuracy (percent) from hard predictions.

    Macro-F1 averages per-class F1 = 2TP / (2TP + FP + FN) over classes present in the
    labels OR the predictions (sklearn's default label set; such a class always has a
    defined F1, possibly 0). Balanced accuracy is the mean per-class recall over classes
    present in the labels (sklearn's ``balanced_accuracy_score``).

    >>> m = classification_metrics_from_preds(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 1]))
    >>> round(m[MetricKey.MACRO_F1], 4), round(m[MetricKey.BALANCED_ACC], 4)
    (38.8889, 66.6667)
    """
    labels = labels.long()
    preds = preds.to(labels.device).long()
    c = num_classes or int(max(labels.max(), preds.max())) + 1
    # the formulas live in harness.metrics.confusion (numpy): the leaderboard's bootstrap reuses them
    conf = confusion.confusion_matrices(labels.cpu().numpy(), preds.cpu().numpy(), c)
    return {MetricKey.MACRO_F1: float(confusion.macro_f1(conf)),
            MetricKey.BALANCED_ACC: float(confusion.balanced_accuracy(conf))}


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor,
                           ks: tuple[int, ...] = (1, 5)) -> dict[MetricKey, float]:
    """Top-k accuracy (ks among 1, 5), macro-F1 and balanced accuracy, all in percent.

    Top-k hits follow :func:`per_sample_correct`; the hard predictions behind macro-F1
    and balanced accuracy follow :func:`pessimistic_predictions`, so ties never help.

    >>> s = torch.tensor([[.9, .1, .0], [.5, .5, .0], [.2, .3, .5], [.1, .2, .7]])
    >>> m = classification_metrics(s, torch.tensor([0, 0, 1, 2]))
    >>> m[MetricKey.ACC1], m[MetricKey.ACC5], round(m[MetricKey.MACRO_F1], 4)
    (50.0, 100.0, 44.4444)
    """
    labels = _check_labels(logits, labels)
    out = {MetricKey(f"acc{k}"): 100.0 * per_sample_correct(logits, labels, k).double()
           .mean().item() for k in ks}
    preds = pessimistic_predictions(logits, labels)
    out.update(classification_metrics_from_preds(preds, labels, logits.shape[1]))
    return out
