"""Pairwise hard-negative accuracy (Winoground-style) for datasets that declare swap pairs.

A dataset may put ``info["hard_negative_pairs"] = [[i, j, kind], ...]``: images i and j
share their layout and their k-th captions differ only by ``kind`` (a colour swap, a shape
swap, a relation swap, ...). For each pair and caption position k we ask both questions:
does image i prefer its caption over j's (text side), and does i's caption prefer image i
over image j (image side)? Both directions for both images, ties counted as wrong.
Recall@k can saturate on such data while these scores still separate models that bind
attributes to objects from bags-of-words.

One implementation with the ``caption_selection`` task: the groups are
:func:`harness.datasets.selection.swap_groups` and their checks
:func:`harness.metrics.selection.winoground_checks`, exactly what that task scores on the synthetic
data; ``hn_<kind>`` is the mean of the four checks, where the task reports the text side alone
(``acc_<kind>``) and Winoground's all-or-nothing text / image / group scores.
"""

from __future__ import annotations

from collections import defaultdict

from harness.datasets.selection import swap_groups
from harness.metrics.keys import hard_negative_key
from harness.metrics.selection import winoground_checks

BINDING_KINDS = ("colour_swap", "shape_swap")
CHECKS_PER_CAPTION = 4  # per caption position: i and j each pick their caption, each caption its image


def metric_key(kind: str) -> str:
    return hard_negative_key(kind)


def captions_by_image(caption_to_image: list[int], n_images: int) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in range(n_images)]
    for j, i in enumerate(caption_to_image):
        out[i].append(j)
    return out


def needed_pairs(caption_to_image: list[int], n_images: int, pairs) -> list[tuple[int, int]]:
    """Every (image, caption) pair whose score the comparisons need, each once, sorted."""
    out = set()
    for _, i, j, a, b in swap_groups(caption_to_image, n_images, pairs):
        out.update(((i, a), (i, b), (j, a), (j, b)))
    return sorted(out)


def accuracy_from_scores(caption_to_image: list[int], n_images: int, pairs,
                         score: dict[tuple[int, int], float]) -> dict[str, float]:
    """Percent of pairwise comparisons won, per swap kind, plus ``hn_binding`` over the
    colour and shape swaps together; ``score[(image, caption)]`` covers :func:`needed_pairs`.

    >>> s = {(0, 0): .9, (0, 1): .2, (1, 0): .5, (1, 1): .5}
    >>> accuracy_from_scores([0, 1], 2, [[0, 1, "relation_swap"]], s)
    {'hn_relation': 75.0}
    """
    return accuracy_from_groups(comparison_groups(caption_to_image, n_images, pairs, score))


def comparison_groups(caption_to_image: list[int], n_images: int, pairs,
                      score: dict[tuple[int, int], float]) -> dict[str, list[list[int]]]:
    """Per ``hn_*`` key, ``[wins, checks]`` of each group of comparisons linked by a shared
    image (the connected components of that key's pairs), in order of their first pair.

    Each caption position of a swap pair is a Winoground-style 2x2 group
    (:func:`harness.datasets.selection.swap_groups`, the groups the synthetic caption-selection
    task scores too) and its four checks are :func:`harness.metrics.selection.winoground_checks`:
    a ``hn_*`` accuracy is the share of those checks won, pooled.

    These are what the per-query sidecar keeps and the leaderboard resamples: the four checks
    of a caption position, the caption positions of a pair, and the pairs of a scene family
    share images and captions, so they succeed or fail together; groups sharing no image are
    the independent units. The accuracy is ``100 * sum(wins) / sum(checks)``
    (:func:`accuracy_from_groups`), the number :func:`accuracy_from_scores` reports.

    >>> s = {(i, c): float(i == c) for i in range(5) for c in range(5)}
    >>> s[3, 4] = s[4, 3] = 1.0  # images 3 and 4 cannot tell their captions apart
    >>> comparison_groups([0, 1, 2, 3, 4], 5, [[0, 1, "colour_swap"], [1, 2, "relation_swap"],
    ...                                        [1, 2, "colour_swap"], [3, 4, "colour_swap"]], s)
    {'hn_colour': [[8, 8], [0, 4]], 'hn_binding': [[8, 8], [0, 4]], 'hn_relation': [[4, 4]]}
    """
    groups = list(swap_groups(caption_to_image, n_images, pairs))
    if not groups:
        return {}
    wins = winoground_checks([[[score[i, a], score[i, b]], [score[j, a], score[j, b]]]
                              for _, i, j, a, b in groups]).sum(axis=1)
    members: dict[str, list[tuple[int, int, int, int]]] = defaultdict(list)  # (i, j, wins, checks)
    for (kind, i, j, _, _), w in zip(groups, wins.tolist()):
        for key in (kind, "binding") if kind in BINDING_KINDS else (kind,):
            members[metric_key(key)].append((i, j, int(w), CHECKS_PER_CAPTION))
    out: dict[str, list[list[int]]] = {}
    for key, rows in members.items():
        root = _components([(i, j) for i, j, _, _ in rows])
        comps: dict[int, list[int]] = {}  # component root -> [wins, checks], in first-pair order
        for i, _, w, c in rows:
            group = comps.setdefault(root(i), [0, 0])
            group[0] += w
            group[1] += c
        out[key] = list(comps.values())
    return out


def _components(edges: list[tuple[int, int]]):
    """Union-find over images; returns ``root(image)`` (one id per connected component)."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in edges:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return root


def accuracy_from_groups(groups: dict[str, list[list[int]]]) -> dict[str, float]:
    """``100 * sum(wins) / sum(checks)`` per key, from :func:`comparison_groups`.

    >>> accuracy_from_groups({"hn_relation": [[3, 4], [4, 4]]})
    {'hn_relation': 87.5}
    """
    return {key: 100.0 * sum(w for w, _ in rows) / sum(c for _, c in rows) for key, rows in groups.items()}


def hard_negative_accuracy(image_emb, text_emb, caption_to_image: list[int], pairs) -> dict[str, float]:
    """:func:`accuracy_from_scores` with dot-product scores of a dual encoder's embeddings.

    >>> import torch
    >>> img = torch.eye(2); txt = torch.tensor([[1., 0.], [0., 1.]])
    >>> hard_negative_accuracy(img, txt, [0, 1], [[0, 1, "colour_swap"]])
    {'hn_colour': 100.0, 'hn_binding': 100.0}
    """
    return accuracy_from_groups(hard_negative_groups(image_emb, text_emb, caption_to_image, pairs))


def hard_negative_groups(image_emb, text_emb, caption_to_image: list[int], pairs) -> dict[str, list[list[int]]]:
    """:func:`comparison_groups` with dot-product scores of a dual encoder's embeddings."""
    return comparison_groups(caption_to_image, len(image_emb), pairs,
                             dot_scores(image_emb, text_emb, needed_pairs(caption_to_image, len(image_emb), pairs)))


def dot_scores(image_emb, text_emb, need: list[tuple[int, int]]) -> dict[tuple[int, int], float]:
    """``{(image, caption): image_emb[image] . text_emb[caption]}`` for the listed pairs."""
    import torch

    if not need:
        return {}
    idx = torch.as_tensor(need, device=image_emb.device)
    scores = (image_emb[idx[:, 0]].float() * text_emb[idx[:, 1]].float()).sum(1).tolist()
    return dict(zip(need, scores))
