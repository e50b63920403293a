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


def _comparisons(caption_to_image: list[int], n_images: int, pairs):
    """(kind, image i, image j, i's captions, j's captions) per pair, equal-length caption lists."""
    caps = captions_by_image(caption_to_image, n_images)
    for i, j, kind in pairs:
        k = min(len(caps[i]), len(caps[j]))
        if k:
            yield kind, i, j, caps[i][:k], caps[j][:k]


def needed_pairs(caption_to_image: list[int], n_images: int, pairs) -> list[tuple[int, int]]:
    """Every (image, caption) pair whose score the comparisons need, each once, sorted."""
    out = set()
    for _, i, j, ci, cj in _comparisons(caption_to_image, n_images, pairs):
        out.update((img, c) for img in (i, j) for c in ci + cj)
    return sorted(out)


def accuracy_from_scores(caption_to_image: list[int], n_images: int, pairs,
                         score: dict[tuple[int, int], float]) -> dict[str, float]:
    """Percent of pairwise comparisons won, per swap kind, plus ``hn_binding`` over the
    colour and shape swaps together; ``score[(image, caption)]`` covers :func:`needed_pairs`.

    >>> s = {(0, 0): .9, (0, 1): .2, (1, 0): .5, (1, 1): .5}
    >>> accuracy_from_scores([0, 1], 2, [[0, 1, "relation_swap"]], s)
    {'hn_relation': 75.0}
    """
    won: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for kind, i, j, ci, cj in _comparisons(caption_to_image, n_images, pairs):
        wins = 0
        for a, b in zip(ci, cj):
            wins += (score[i, a] > score[i, b]) + (score[j, b] > score[j, a])  # images pick their captions
            wins += (score[i, a] > score[j, a]) + (score[j, b] > score[i, b])  # captions pick their images
        for key in (kind, "binding") if kind in BINDING_KINDS else (kind,):
            won[key] += int(wins)
            total[key] += 4 * len(ci)
    return {metric_key(kind): 100.0 * won[kind] / total[kind] for kind in total}


def hard_negative_accuracy(image_emb, text_emb, caption_to_image: list[int], pairs) -> dict[str, float]:
    """:func:`accuracy_from_scores` with dot-product scores of a dual encoder's embeddings.

    >>> import torch
    >>> img = torch.eye(2); txt = torch.tensor([[1., 0.], [0., 1.]])
    >>> hard_negative_accuracy(img, txt, [0, 1], [[0, 1, "colour_swap"]])
    {'hn_colour': 100.0, 'hn_binding': 100.0}
    """
    import torch

    need = needed_pairs(caption_to_image, len(image_emb), pairs)
    if not need:
        return {}
    idx = torch.as_tensor(need, device=image_emb.device)
    scores = (image_emb[idx[:, 0]].float() * text_emb[idx[:, 1]].float()).sum(1).tolist()
    return accuracy_from_scores(caption_to_image, len(image_emb), pairs, dict(zip(need, scores)))

