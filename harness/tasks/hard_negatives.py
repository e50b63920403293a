"""Pairwise hard-negative accuracy (Winoground-style) for datasets that declare swap pairs.

A dataset may put ``info["hard_negative_pairs"] = [[i, j, kind], ...]``: images i and j
share their layout and their k-th captions differ only by ``kind`` (a colour swap, a shape
swap, a relation swap, ...). For each pair and caption position k we ask both questions:
does image i prefer its caption over j's (text side), and does i's caption prefer image i
over image j (image side)? Both directions for both images, ties counted as wrong.
Recall@k can saturate on such data while these scores still separate models that bind
attributes to objects from bags-of-words.
"""

from __future__ import annotations

from collections import defaultdict

BINDING_KINDS = ("colour_swap", "shape_swap")


def metric_key(kind: str) -> str:
    return f"hn_{kind.removesuffix('_swap')}"


def captions_by_image(caption_to_image: list[int], n_images: int) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(n_images)]
    for j, i in enumerate(caption_to_image):
        out[i].append(j)
    return out


def hard_negative_accuracy(image_emb, text_emb, caption_to_image: list[int], pairs) -> dict[str, float]:
    """Percent of pairwise comparisons won, per swap kind, plus ``hn_binding`` over the
    colour and shape swaps together (scores = dot products of the embeddings).

    >>> import torch
    >>> img = torch.eye(2); txt = torch.tensor([[1., 0.], [0., 1.]])
    >>> hard_negative_accuracy(img, txt, [0, 1], [[0, 1, "colour_swap"]])
    {'hn_colour': 100.0, 'hn_binding': 100.0}
    """
    return pairwise_accuracy(lambda imgs, caps: image_emb[imgs] @ text_emb[caps].T, len(image_emb),
                             caption_to_image, pairs)


def pairwise_accuracy(score_block, n_images: int, caption_to_image: list[int], pairs) -> dict[str, float]:
    """:func:`hard_negative_accuracy` for any scorer: ``score_block(images, captions)`` gives the
    (len(images), len(captions)) match scores (a cross-encoder scores each pair jointly).

    >>> import torch
    >>> pairwise_accuracy(lambda i, c: -torch.ones(len(i), len(c)), 2, [0, 1], [[0, 1, "relation_swap"]])
    {'hn_relation': 0.0}
    """
    import torch

    caps = captions_by_image(caption_to_image, n_images)
    won: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for i, j, kind in pairs:
        k = min(len(caps[i]), len(caps[j]))
        if k == 0:
            continue
        ci, cj = torch.as_tensor(caps[i][:k]), torch.as_tensor(caps[j][:k])
        scores = score_block([i, j], torch.cat([ci, cj]))
        s_i, s_j = scores[:, :k], scores[:, k:]  # (2, k): rows image i, image j
        wins = ((s_i[0] > s_j[0]).sum() + (s_j[1] > s_i[1]).sum()      # images pick their captions
                + (s_i[0] > s_i[1]).sum() + (s_j[1] > s_j[0]).sum())   # captions pick their images
        for key in (kind, "binding") if kind in BINDING_KINDS else (kind,):
            won[key] += int(wins)
            total[key] += 4 * k
    return {metric_key(kind): 100.0 * won[kind] / total[kind] for kind in total}
