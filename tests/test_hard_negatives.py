import doctest

import torch

import harness.tasks.hard_negatives as hn


def test_doctest():
    assert doctest.testmod(hn).failed == 0


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
