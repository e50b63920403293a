"""Retrieval with a cross-encoder: rerank a dual encoder's top-k, or score every pair.

Cross-encoders are quadratic over a dataset (docs/architecture.md), so each query's ``k`` best
candidates under a prefilter dual encoder (BLIP's own ITC head, or a named model) are
rescored by the cross-encoder and reordered; queries whose correct item is not among the
candidates keep their prefilter rank. When images x captions fits the pair budget and no
prefilter is named, every pair is scored instead (k = the whole gallery). Both directions
share one pair-scoring pass, so each image is decoded and encoded once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.core import progress
from harness.core.errors import OptionError
from harness.core.measure import Stage
from harness.datasets.base import RetrievalData
from harness.parallel import shard_plan
from harness.tasks.encode import EncodeOptions
from harness.tasks.options import DEFAULT_PAIR_BUDGET

DEFAULT_RERANK_K = 128


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
            raise OptionError(
                f"{n_images} images x {n_captions} captions = {n_images * n_captions:,} pairs exceeds "
                f"the pair budget ({pair_budget:,}); name a prefilter dual encoder with --prefilter "
                f"or raise --pair-budget")
        return RerankPlan(k=max(n_images, n_captions), prefilter=None, prefilter_name=None,
                          pair_budget=pair_budget)
    return RerankPlan(k=k or DEFAULT_RERANK_K, prefilter=prefilter, prefilter_name=prefilter_name,
                      pair_budget=pair_budget, prefilter_cache=prefilter_cache)


@dataclass
class Candidates:
    """Each query's candidate list in both directions, with what its ranks need.

    Text->image: every caption queries its row of ``t2i_index`` (image ids); image->text:
    every image with a caption (``queried``) queries its row of ``i2t_index`` (caption ids).
    ``*_prefilter`` are the candidates' prefilter scores (zeros when every pair is scored),
    ``fallback_*`` the prefilter ranks kept by queries whose correct item is not a candidate.
    """

    n_images: int
    caption_to_image: Any   # (M,)
    queried: Any            # (N',) images with >= 1 caption, in index order
    t2i_index: Any          # (M, k)
    t2i_prefilter: Any      # (M, k)
    i2t_index: Any          # (N', k')
    i2t_prefilter: Any      # (N', k')
    fallback_t2i: Any       # (M,)
    fallback_i2t: Any       # (N',)

    def t2i_pairs(self):
        """(M * k, 2) (image, caption) pairs, row-major over ``t2i_index``."""
        import torch

        m, k = self.t2i_index.shape
        return torch.stack([self.t2i_index.reshape(-1), torch.arange(m).repeat_interleave(k)], 1)

    def i2t_pairs(self):
        """(N' * k', 2) (image, caption) pairs, row-major over ``i2t_index``."""
        import torch

        return torch.stack([self.queried.repeat_interleave(self.i2t_index.shape[1]), self.i2t_index.reshape(-1)], 1)

    def ranks(self, t2i_scores, i2t_scores):
        """First-hit ranks ``(t2i (M,), i2t (N',))`` from the reranker's scores of
        :meth:`t2i_pairs` and :meth:`i2t_pairs`, by :func:`harness.metrics.functional.reranked_first_hit_ranks`
        (ties broken by prefilter score, then counted against the model)."""
        import torch

        from harness.metrics import functional as M

        c2i = self.caption_to_image
        t2i = M.reranked_first_hit_ranks(self.t2i_index, t2i_scores.reshape(self.t2i_index.shape),
                                         self.t2i_prefilter, c2i, torch.arange(self.n_images), self.fallback_t2i)
        i2t = M.reranked_first_hit_ranks(self.i2t_index, i2t_scores.reshape(self.i2t_index.shape),
                                         self.i2t_prefilter, self.queried, c2i, self.fallback_i2t)
        return t2i, i2t


def candidates(caption_to_image, n_images: int, k: int, image_emb=None, text_emb=None) -> Candidates:
    """The top-``k`` candidates of every query under the prefilter's embeddings
    (:func:`harness.metrics.functional.topk_candidates`, ties in gallery order), or every gallery item
    when there are no embeddings (all-pairs scoring; fallback ranks then never apply).

    >>> import torch
    >>> img, txt = torch.eye(3), torch.eye(3)[[0, 1, 2, 2]]
    >>> c = candidates(torch.tensor([0, 1, 2, 2]), 3, 2, img, txt)
    >>> c.t2i_index[:, 0].tolist(), c.ranks(torch.zeros(8), torch.zeros(6))[0].tolist()
    ([0, 1, 2, 2], [1, 1, 1, 1])
    """
    import torch

    from harness.metrics import functional as M

    c2i = torch.as_tensor(caption_to_image, dtype=torch.long).cpu()
    m = len(c2i)
    queried = torch.bincount(c2i, minlength=n_images).nonzero().squeeze(1)
    if image_emb is None:
        return Candidates(n_images, c2i, queried,
                          torch.arange(n_images).expand(m, n_images), torch.zeros(m, n_images),
                          torch.arange(m).expand(len(queried), m), torch.zeros(len(queried), m),
                          torch.full((m,), n_images + 1), torch.full((len(queried),), m + 1))
    fb_t2i, fb_i2t = (r.cpu() for r in M.retrieval_ranks(image_emb, text_emb, c2i))
    t2i_pre, t2i_idx = M.topk_candidates(text_emb, image_emb, k)
    i2t_pre, i2t_idx = M.topk_candidates(image_emb[queried.to(image_emb.device)], text_emb, k)
    return Candidates(n_images, c2i, queried, t2i_idx.cpu(), t2i_pre.cpu(), i2t_idx.cpu(), i2t_pre.cpu(),
                      fb_t2i, fb_i2t)


def rerank_ranks(cross, data: RetrievalData, image_emb, text_emb, plan: RerankPlan,
                 opts: EncodeOptions, score_stage: Stage, rerank_stage: Stage,
                 extra_pairs=None) -> RerankOutcome:
    """Reranked first-hit ranks in both directions; ``image_emb``/``text_emb`` are the
    prefilter's embeddings (None for all-pairs scoring). ``score_stage`` times the
    prefilter's ranking and top-k, ``rerank_stage`` the pair scoring (items = pairs).
    ``extra_pairs`` ((P, 2) image, caption ids, e.g. hard negatives) are scored in the same
    pass, so no image goes through the towers twice; their scores come back in order."""
    import torch

    from harness.tasks.pairs import score_pair_index

    m = len(data.captions)
    with score_stage:
        cand = candidates(data.caption_to_image, len(data.images), plan.k, image_emb, text_emb)
        score_stage.add_items(m + len(cand.queried))
    # one pass over the union of (image, caption) pairs of both directions
    t2i_pairs, i2t_pairs = cand.t2i_pairs(), cand.i2t_pairs()
    extra = torch.as_tensor(extra_pairs if extra_pairs is not None else [], dtype=torch.long).reshape(-1, 2)
    keys = torch.cat([t2i_pairs[:, 0] * m + t2i_pairs[:, 1], i2t_pairs[:, 0] * m + i2t_pairs[:, 1],
                      extra[:, 0] * m + extra[:, 1]])
    unique, inverse = torch.unique(keys, return_inverse=True)
    pairs = torch.stack([unique // m, unique % m], 1)
    with rerank_stage, progress.bar("rerank", len(pairs), unit="pair") as bar:
        # a sharded run: each rank scores its image batches, then all ranks get all
        scores = score_pair_index(cross, data.images, data.captions, pairs, opts, rerank_stage, plan.pair_batch,
                                  bar, owned=shard_plan.pair_batches_owned())
    scores = shard_plan.gather_scores(scores)
    scored = scores[inverse]
    n_t2i, n_i2t = t2i_pairs.shape[0], i2t_pairs.shape[0]
    t2i, i2t = cand.ranks(scored[:n_t2i], scored[n_t2i:n_t2i + n_i2t])
    return RerankOutcome(t2i, i2t, pairs_scored=len(pairs), k_used=int(cand.t2i_index.shape[1]),
                         extra_scores=scored[n_t2i + n_i2t:])
