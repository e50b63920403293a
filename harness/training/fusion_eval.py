"""Evaluating fusion heads on cached tower features: dual retrieval, prefilter-then-rerank
retrieval for cross heads, and pairwise hard-negative accuracy from features."""

from __future__ import annotations

from collections.abc import Callable

import torch

from harness.metrics import functional as M
from harness.models.fusion.heads import index_features


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@torch.no_grad()
def late_embeddings(head, img_feats: dict, txt_feats: dict, batch: int = 4096):
    """Unit-norm (N, D) image and (M, D) text embeddings of a late head over cached features."""
    was = head.training
    head.eval()
    n, m = len(img_feats["pooled"]), len(txt_feats["pooled"])
    img = torch.cat([head.encode_image(index_features(img_feats, s)) for s in _chunks(n, batch)])
    txt = torch.cat([head.encode_text(index_features(txt_feats, s)) for s in _chunks(m, batch)])
    head.train(was)
    return img, txt


def rounded(d: dict) -> dict:
    return {k.value if hasattr(k, "value") else k: round(float(v), 2) for k, v in d.items()}


def dual_metrics(img_emb, txt_emb, caption_to_image) -> dict:
    t2i, i2t = M.retrieval_ranks(img_emb, txt_emb, torch.as_tensor(caption_to_image))
    return rounded(M.metrics_from_ranks(t2i, i2t))


def pair_scorer(head, img_feats: dict, txt_feats: dict, batch: int = 2048) -> Callable:
    """``score(image_idx, caption_idx) -> (P,)`` for a cross head: per-image and per-text work
    (``prepare_*``) done once up front, only the pair part per call, in batches."""
    was = head.training
    head.eval()
    with torch.no_grad():
        img = _cat_dicts([head.prepare_image(index_features(img_feats, s))
                          for s in _chunks(len(img_feats["pooled"]), 512)])
        txt = _cat_dicts([head.prepare_text(index_features(txt_feats, s))
                          for s in _chunks(len(txt_feats["pooled"]), 2048)])
    head.train(was)

    @torch.no_grad()
    def score(image_idx, caption_idx):
        image_idx, caption_idx = torch.as_tensor(image_idx), torch.as_tensor(caption_idx)
        out = [head.eval().score(index_features(img, image_idx[s]), index_features(txt, caption_idx[s]))
               for s in _chunks(len(image_idx), batch)]
        head.train(was)
        return torch.cat(out).float() if out else torch.empty(0)

    return score


def _cat_dicts(parts: list[dict]) -> dict:
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@torch.no_grad()
def rerank_ranks(pre_img, pre_txt, caption_to_image, score: Callable, k: int):
    """1-based first-hit ranks ``(t2i, i2t)`` after reranking the prefilter's top-k with
    ``score``: the same candidates and tie rule as ``vlbench run`` (``tasks.rerank``), so
    the epoch ``vlbench fit`` selects is the one ``vlbench run`` scores best.

    Queries whose correct item is outside the prefilter's top k keep their prefilter rank
    (at least k + 1); inside, candidates are ordered by ``score``, ties by prefilter score,
    and remaining ties are counted against the model.

    >>> img = torch.eye(3); txt = torch.eye(3)[[0, 1, 2, 2]]
    >>> oracle = lambda i, c: (torch.as_tensor([0, 1, 2, 2])[c] == i).float()
    >>> [r.tolist() for r in rerank_ranks(img, txt, [0, 1, 2, 2], oracle, k=2)]
    [[1, 1, 1, 1], [1, 1, 1]]
    """
    from harness.tasks.rerank import candidates

    cand = candidates(caption_to_image, len(pre_img), k, pre_img, pre_txt)
    t2i_pairs, i2t_pairs = cand.t2i_pairs(), cand.i2t_pairs()
    return cand.ranks(score(t2i_pairs[:, 0], t2i_pairs[:, 1]), score(i2t_pairs[:, 0], i2t_pairs[:, 1]))


def rerank_metrics(pre_img, pre_txt, caption_to_image, score: Callable, k: int) -> dict:
    return rounded(M.metrics_from_ranks(*rerank_ranks(pre_img, pre_txt, caption_to_image, score, k)))


def cross_hard_negatives(score: Callable, n_images: int, caption_to_image, pairs) -> dict:
    """Hard-negative pair accuracy of a cross head: ``score`` from :func:`pair_scorer` on every
    (image, caption) pair the comparisons need, pairs as the dataset declares them
    (``tasks.hard_negatives`` owns their definition and the comparison rule)."""
    from harness.tasks.hard_negatives import accuracy_from_scores, needed_pairs

    need = needed_pairs(caption_to_image, n_images, pairs)
    if not need:
        return {}
    idx = torch.as_tensor(need)
    scores = dict(zip(need, score(idx[:, 0], idx[:, 1]).tolist()))
    return {k: round(v, 2) for k, v in accuracy_from_scores(caption_to_image, n_images, pairs, scores).items()}
