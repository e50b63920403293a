"""Retrieval with a cross-encoder: rerank a dual encoder's top-k, or score every pair.

Cross-encoders are quadratic over a dataset (DESIGN.md), so each query's ``k`` best
candidates under a prefilter dual encoder (BLIP's own ITC head, or a named model) are
rescored by the cross-encoder and reordered; queries whose correct item is not among the
candidates keep their prefilter rank. When images x captions fits the pair budget and no
prefilter is named, every pair is scored instead (k = the whole gallery). Both directions
share one pair-scoring pass, so each image is decoded and encoded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.datasets.base import RetrievalData
from harness.measure import Stage
from harness.tasks.encode import EncodeOptions

DEFAULT_RERANK_K = 128
DEFAULT_PAIR_BUDGET = 1_000_000


@dataclass
class RerankPlan:
    """How a cross-encoder's retrieval run is organised (all of it lands in the record)."""

    k: int = DEFAULT_RERANK_K
    prefilter: Any = None          # a loaded DualEncoder, or None for all-pairs scoring
    prefilter_name: str | None = None
    pair_budget: int = DEFAULT_PAIR_BUDGET
    pair_batch: int = 256
    prefilter_cache: Any = None    # EncodeCache keyed by the prefilter's own weights (None: the run's)

    @property
    def all_pairs(self) -> bool:
        return self.prefilter is None

    def describe(self) -> dict:
        return {"rerank_k": None if self.all_pairs else self.k, "prefilter": self.prefilter_name,
                "pair_budget": self.pair_budget, "all_pairs": self.all_pairs}


@dataclass
class RerankOutcome:
    t2i: Any                # (M,) first-hit ranks
    i2t: Any                # (N',) first-hit ranks of images with captions
    pairs_scored: int
    k_used: int
    extra_scores: Any = None  # (P,) scores of the extra pairs, in the order given


def plan_for(n_images: int, n_captions: int, k: int | None, prefilter: Any, prefilter_name: str | None,
             pair_budget: int = DEFAULT_PAIR_BUDGET, prefilter_cache: Any = None) -> RerankPlan:
    """Rerank with the prefilter, or all pairs when there is none and the data is small."""
    if prefilter is None:
        if n_images * n_captions > pair_budget:
            raise ValueError(
                f"{n_images} images x {n_captions} captions = {n_images * n_captions:,} pairs exceeds "
                f"the pair budget ({pair_budget:,}); name a prefilter dual encoder with --prefilter "
                f"or raise --pair-budget")
        return RerankPlan(k=max(n_images, n_captions), prefilter=None, prefilter_name=None,
                          pair_budget=pair_budget)
    return RerankPlan(k=k or DEFAULT_RERANK_K, prefilter=prefilter, prefilter_name=prefilter_name,
                      pair_budget=pair_budget, prefilter_cache=prefilter_cache)


def _candidates(query_emb, gallery_emb, n_query: int, n_gallery: int, k: int):
    """Top-k under the prefilter, or every gallery item (prefilter scores all zero)."""
    import torch

    from harness.metrics import topk_candidates

    if query_emb is None:
        return torch.zeros(n_query, n_gallery), torch.arange(n_gallery).expand(n_query, n_gallery)
    scores, index = topk_candidates(query_emb, gallery_emb, k)
    return scores.cpu(), index.cpu()


def rerank_ranks(cross, data: RetrievalData, image_emb, text_emb, plan: RerankPlan,
                 opts: EncodeOptions, score_stage: Stage, rerank_stage: Stage,
                 extra_pairs=None) -> RerankOutcome:
    """Reranked first-hit ranks in both directions; ``image_emb``/``text_emb`` are the
    prefilter's embeddings (None for all-pairs scoring). ``score_stage`` times the
    prefilter's ranking and top-k, ``rerank_stage`` the pair scoring (items = pairs).
    ``extra_pairs`` ((P, 2) image, caption ids, e.g. hard negatives) are scored in the same
    pass, so no image goes through the towers twice; their scores come back in order."""
    import torch

    from harness import metrics as M
    from harness.tasks.pairs import score_pair_index

    c2i = torch.as_tensor(data.caption_to_image, dtype=torch.long)
    n, m = len(data.images), len(data.captions)
    queried = torch.bincount(c2i, minlength=n).nonzero().squeeze(1)
    with score_stage:
        t2i_pre, t2i_idx, i2t_pre, i2t_idx, fb_t2i, fb_i2t = _prefilter(
            image_emb, text_emb, c2i, queried, n, m, plan.k)
        score_stage.add_items(m + len(queried))
    # one pass over the union of (image, caption) pairs of both directions
    t2i_pairs = torch.stack([t2i_idx.reshape(-1), torch.arange(m).repeat_interleave(t2i_idx.shape[1])], 1)
    i2t_pairs = torch.stack([queried.repeat_interleave(i2t_idx.shape[1]), i2t_idx.reshape(-1)], 1)
    extra = torch.as_tensor(extra_pairs if extra_pairs is not None else [], dtype=torch.long).reshape(-1, 2)
    keys = torch.cat([t2i_pairs[:, 0] * m + t2i_pairs[:, 1], i2t_pairs[:, 0] * m + i2t_pairs[:, 1],
                      extra[:, 0] * m + extra[:, 1]])
    unique, inverse = torch.unique(keys, return_inverse=True)
    pairs = torch.stack([unique // m, unique % m], 1)
    with rerank_stage:
        scores = score_pair_index(cross, data.images, data.captions, pairs, opts, rerank_stage, plan.pair_batch)
    scored = scores[inverse]
    t2i_rr = scored[:t2i_pairs.shape[0]].reshape(t2i_idx.shape)
    n_t2i, n_i2t = t2i_pairs.shape[0], i2t_pairs.shape[0]
    i2t_rr = scored[n_t2i:n_t2i + n_i2t].reshape(i2t_idx.shape)
    t2i = M.reranked_first_hit_ranks(t2i_idx, t2i_rr, t2i_pre, c2i, torch.arange(n), fb_t2i)
    i2t = M.reranked_first_hit_ranks(i2t_idx, i2t_rr, i2t_pre, queried, c2i, fb_i2t)
    return RerankOutcome(t2i, i2t, pairs_scored=len(pairs), k_used=int(t2i_idx.shape[1]),
                         extra_scores=scored[n_t2i + n_i2t:])


def _prefilter(image_emb, text_emb, c2i, queried, n: int, m: int, k: int):
    """Candidates, their prefilter scores and fallback ranks, both directions."""
    import torch

    from harness import metrics as M

    if image_emb is not None:
        fb_t2i, fb_i2t = (r.cpu() for r in M.retrieval_ranks(image_emb, text_emb, c2i))
        t2i_pre, t2i_idx = _candidates(text_emb, image_emb, m, n, k)
        i2t_pre, i2t_idx = _candidates(image_emb[queried.to(image_emb.device)], text_emb, len(queried), m, k)
    else:
        fb_t2i = torch.full((m,), n + 1)
        fb_i2t = torch.full((len(queried),), m + 1)
        t2i_pre, t2i_idx = _candidates(None, None, m, n, n)
        i2t_pre, i2t_idx = _candidates(None, None, len(queried), m, m)
    return t2i_pre, t2i_idx, i2t_pre, i2t_idx, fb_t2i, fb_i2t
