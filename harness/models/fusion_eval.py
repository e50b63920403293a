"""Evaluating fusion heads on cached tower features: dual retrieval, prefilter-then-rerank
retrieval for cross heads, and pairwise hard-negative accuracy from features."""

from __future__ import annotations

from collections.abc import Callable

import torch

from harness import metrics as M
from harness.models.fusion_heads import index_features


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
    """1-based first-hit ranks after reranking the prefilter's top-k with ``score``.

    Queries whose correct item is outside the prefilter's top k keep their prefilter rank
    (at least k + 1); inside, rank = 1 + #(wrong candidates scoring >= the best correct
    one), ties counted against the model as everywhere in vlbench.

    >>> img = torch.eye(3); txt = torch.eye(3)[[0, 1, 2, 2]]
    >>> oracle = lambda i, c: (torch.as_tensor([0, 1, 2, 2])[c] == i).float()
    >>> [r.tolist() for r in rerank_ranks(img, txt, [0, 1, 2, 2], oracle, k=2)]
    [[1, 1, 1, 1], [1, 1, 1]]
    """
    c2i = torch.as_tensor(caption_to_image)
    base_t2i, base_i2t = M.retrieval_ranks(pre_img, pre_txt, c2i)
    k_img, k_txt = min(k, len(pre_img)), min(k, len(pre_txt))
    cand_img = torch.cat([(pre_txt[s] @ pre_img.T).topk(k_img, dim=1).indices for s in _chunks(len(pre_txt), 1024)])
    caps = torch.arange(len(pre_txt)).unsqueeze(1).expand_as(cand_img)
    s_t2i = score(cand_img.reshape(-1), caps.reshape(-1)).view_as(cand_img)
    t2i = _reranked(s_t2i, cand_img == c2i.unsqueeze(1), base_t2i, k)
    queried = torch.unique(c2i)
    cand_txt = (pre_img[queried] @ pre_txt.T).topk(k_txt, dim=1).indices
    imgs = queried.unsqueeze(1).expand_as(cand_txt)
    s_i2t = score(imgs.reshape(-1), cand_txt.reshape(-1)).view_as(cand_txt)
    i2t = _reranked(s_i2t, c2i[cand_txt] == queried.unsqueeze(1), base_i2t, k)
    return t2i, i2t


def _reranked(scores, correct, base_ranks, k: int):
    best = scores.masked_fill(~correct, float("-inf")).max(dim=1).values
    rank = 1 + ((scores >= best.unsqueeze(1)) & ~correct).sum(dim=1)
    return torch.where(correct.any(dim=1), rank, base_ranks.clamp(min=k + 1))


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
