
import torch

import harness.tasks.hard_negatives as hn


def test_hand_computed_mixed_outcomes():
    # image 0 matches caption 0; image 1 sits between both captions but nearer caption 0.
    img = torch.tensor([[1.0, 0.0], [0.8, 0.6]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = hn.hard_negative_accuracy(img, txt, [0, 1], [[0, 1, "relation_swap"]])
    # image0 picks cap0 (1 > 0) win; image1 picks cap1? 0.6 < 0.8 lose;
    # cap0 picks image0 (1 > .8) win; cap1 picks image1 (.6 > 0) win -> 3 of 4
    assert out == {"hn_relation": 75.0}


def test_ties_count_as_wrong_and_binding_aggregates():
    img = torch.nn.functional.normalize(torch.ones(4, 3), dim=-1)
    txt = torch.nn.functional.normalize(torch.ones(8, 3), dim=-1)
    gt = [0, 0, 1, 1, 2, 2, 3, 3]
    out = hn.hard_negative_accuracy(img, txt, gt, [[0, 1, "colour_swap"], [2, 3, "shape_swap"]])
    assert out == {"hn_colour": 0.0, "hn_shape": 0.0, "hn_binding": 0.0}


def test_perfect_model_on_synthetic_pairs_scores_100():
    from harness.datasets import DatasetRequest, TaskKind, synthetic

    data = synthetic.load(DatasetRequest("test", TaskKind.RETRIEVAL))
    n = len(data.images)
    img = torch.eye(n)
    txt = img[torch.tensor(data.caption_to_image)]  # each caption is exactly its image
    out = hn.hard_negative_accuracy(img, txt, data.caption_to_image, data.info["hard_negative_pairs"])
    assert set(out) == {"hn_colour", "hn_shape", "hn_relation", "hn_count", "hn_binding"}
    assert all(v == 100.0 for v in out.values())


def _old_accuracy_from_scores(caption_to_image, n_images, pairs, score):
    """The pre-groups implementation, kept verbatim as the reference for the return value."""
    from collections import defaultdict

    won, total = defaultdict(int), defaultdict(int)
    caps = hn.captions_by_image(caption_to_image, n_images)
    comparisons = [(kind, i, j, caps[i][:k], caps[j][:k]) for i, j, kind in pairs
                   if (k := min(len(caps[i]), len(caps[j])))]  # the pre-groups pairing, inline
    for kind, i, j, ci, cj in comparisons:
        wins = 0
        for a, b in zip(ci, cj):
            wins += (score[i, a] > score[i, b]) + (score[j, b] > score[j, a])
            wins += (score[i, a] > score[j, a]) + (score[j, b] > score[i, b])
        for key in (kind, "binding") if kind in hn.BINDING_KINDS else (kind,):
            won[key] += int(wins)
            total[key] += 4 * len(ci)
    return {hn.metric_key(kind): 100.0 * won[kind] / total[kind] for kind in total}


def _synthetic_with_noisy_scores(seed=0):
    from harness.datasets import DatasetRequest, TaskKind, synthetic

    data = synthetic.load(DatasetRequest("test", TaskKind.RETRIEVAL))
    pairs = data.info["hard_negative_pairs"]
    need = hn.needed_pairs(data.caption_to_image, len(data.images), pairs)
    g = torch.Generator().manual_seed(seed)
    # a mediocre model: the right pairing scores a bit higher on average, with ties sprinkled in
    right = torch.tensor([data.caption_to_image[c] == i for i, c in need], dtype=torch.float)
    scores = (right * 0.5 + torch.rand(len(need), generator=g)).mul(4).round().div(4).tolist()
    return data, pairs, dict(zip(need, scores))


def test_groups_keep_accuracy_from_scores_unchanged_and_share_no_image():
    data, pairs, score = _synthetic_with_noisy_scores()
    c2i, n = data.caption_to_image, len(data.images)
    old = _old_accuracy_from_scores(c2i, n, pairs, score)
    assert hn.accuracy_from_scores(c2i, n, pairs, score) == old      # same values, same key order
    assert list(hn.accuracy_from_scores(c2i, n, pairs, score)) == list(old)
    groups = hn.comparison_groups(c2i, n, pairs, score)
    assert hn.accuracy_from_groups(groups) == old
    assert 0 < old["hn_binding"] < 100                                  # a non-trivial case
    # checks add up to 4 per caption position of every pair of the key
    caps = hn.captions_by_image(c2i, n)
    for key in groups:
        mine = [(i, j) for i, j, kind in pairs if key in (hn.metric_key(kind),
                "hn_binding" if kind in hn.BINDING_KINDS else None)]
        assert sum(c for _, c in groups[key]) == sum(4 * min(len(caps[i]), len(caps[j])) for i, j in mine)


def test_groups_are_independent_units():
    """Groups share no image: a union-find-free reference by flooding over the pairs."""
    data, pairs, score = _synthetic_with_noisy_scores(seed=1)
    groups = hn.comparison_groups(data.caption_to_image, len(data.images), pairs, score)
    colour = [(i, j) for i, j, kind in pairs if kind == "colour_swap"]
    seen, components = set(), 0
    adjacency: dict[int, set[int]] = {}
    for i, j in colour:
        adjacency.setdefault(i, set()).add(j)
        adjacency.setdefault(j, set()).add(i)
    for start in adjacency:
        if start in seen:
            continue
        components += 1
        stack = [start]
        while stack:
            x = stack.pop()
            if x not in seen:
                seen.add(x)
                stack.extend(adjacency[x] - seen)
    assert len(groups["hn_colour"]) == components
    assert len(groups["hn_binding"]) < len(groups["hn_colour"]) + len(groups["hn_shape"])  # merged by shared images


def test_hand_computed_groups():
    s = {(i, c): float(i == c) for i in range(4) for c in range(4)}
    s[2, 3] = 1.0                       # image 2 likes caption 3 as much as its own: 2 of 4 checks lost
    groups = hn.comparison_groups([0, 1, 2, 3], 4, [[0, 1, "shape_swap"], [2, 3, "shape_swap"]], s)
    assert groups == {"hn_shape": [[4, 4], [2, 4]], "hn_binding": [[4, 4], [2, 4]]}
    assert hn.accuracy_from_groups(groups) == {"hn_shape": 75.0, "hn_binding": 75.0}
