"""Tests for harness.metrics.functional: hand-computed cases, ties, and chunked vs naive references."""

from __future__ import annotations

import json

import pytest
import torch

import harness.metrics.functional as hm
from harness.metrics.functional import (
    MetricKey,
    classification_metrics,
    classification_metrics_from_preds,
    first_hit_ranks,
    median_rank,
    per_sample_correct,
    pessimistic_predictions,
    recall_from_ranks,
    retrieval_metrics,
    retrieval_ranks,
)

# ----------------------------------------------------------------- naive references
# Full similarity matrix, then an explicit per-query sort in Python: each gallery item is
# ordered by (score descending, correct items LAST among equals), so ties never help; the
# rank is the 1-based position of the first correct item. Independent of the counting
# formulation used by the module.


def _naive_first_hit(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    ranks = []
    for row, pos in zip(scores.tolist(), positive.tolist()):
        order = sorted(range(len(row)), key=lambda j: (-row[j], pos[j]))
        ranks.append(next(r for r, j in enumerate(order, 1) if pos[j]))
    return torch.tensor(ranks, dtype=torch.long)


def _naive_retrieval_ranks(img, txt, c2i):
    sim = txt.float() @ img.float().T  # (M, N): the full matrix the module must never build
    n = img.shape[0]
    t2i = _naive_first_hit(sim, c2i[:, None] == torch.arange(n)[None, :])
    queried = [i for i in range(n) if (c2i == i).any()]
    i2t = _naive_first_hit(sim.T[queried], torch.stack([c2i == i for i in queried]))
    return t2i, i2t


def _naive_classification(logits, labels):
    """Pessimistic predictions, then confusion-matrix loops for macro-F1 / balanced acc."""
    rows, ys = logits.tolist(), labels.tolist()
    c = logits.shape[1]
    preds = []
    for row, y in zip(rows, ys):
        top = max(row)
        wrong_at_top = [k for k in range(c) if row[k] == top and k != y]
        preds.append(wrong_at_top[0] if wrong_at_top else y)
    conf = [[0] * c for _ in range(c)]
    for y, p in zip(ys, preds):
        conf[y][p] += 1
    f1s, recalls = [], []
    for k in range(c):
        tp = conf[k][k]
        support = sum(conf[k])
        predicted = sum(conf[r][k] for r in range(c))
        if support or predicted:
            f1s.append(2 * tp / (support + predicted))
        if support:
            recalls.append(tp / support)
    return preds, 100 * sum(f1s) / len(f1s), 100 * sum(recalls) / len(recalls)


# ----------------------------------------------------------------------- metric keys

def test_metric_keys_are_the_record_keys():
    expected = ("t2i_R@1 t2i_R@5 t2i_R@10 i2t_R@1 i2t_R@5 i2t_R@10 rsum mean_R@1 t2i_medr i2t_medr "
                "t2i_meanr i2t_meanr acc1 acc5 macro_f1 balanced_acc").split()
    assert [k.value for k in MetricKey] == expected
    assert MetricKey.T2I_R1 == "t2i_R@1" and f"{MetricKey.RSUM}" == "rsum"
    assert json.loads(json.dumps({MetricKey.ACC1: 1.0})) == {"acc1": 1.0}


# ------------------------------------------------------------ retrieval, hand-computed
# Images are the basis vectors, so a caption's score against image i is its i-th entry.
IMAGES = torch.eye(3)
CAPTIONS = torch.tensor([
    [.9, .1, .0],  # img0: .9 is the top score                          t2i rank 1
    [.2, .5, .3],  # img0: .2 below .5 and .3                           t2i rank 3
    [.0, .3, .7],  # img1: .3 below .7                                  t2i rank 2
    [.7, .3, .0],  # img1: .3 below .7                                  t2i rank 2
    [.4, .4, .2],  # img2: .2 below .4 and .4                           t2i rank 3
    [.1, .5, .4],  # img2: .4 below .5                                  t2i rank 2
])
C2I = torch.tensor([0, 0, 1, 1, 2, 2])
# i2t, column i of CAPTIONS is image i's score for each caption:
#   img0: best own .9 (c0), no wrong caption >= .9                       -> rank 1
#   img1: best own .3 (c2,c3 tie, fine); wrong >= .3: c1 .5, c4 .4, c5 .5 -> rank 4
#   img2: best own .4 (c5); wrong >= .4: c2 .7 (c1 .3, c0/c3 0 below)    -> rank 2


def test_hand_computed_ranks_and_metrics():
    t2i, i2t = retrieval_ranks(IMAGES, CAPTIONS, C2I)
    assert t2i.tolist() == [1, 3, 2, 2, 3, 2]
    assert i2t.tolist() == [1, 4, 2]
    m = retrieval_metrics(IMAGES, CAPTIONS, C2I)
    assert m[MetricKey.T2I_R1] == pytest.approx(100 / 6)
    assert m[MetricKey.T2I_R5] == m[MetricKey.T2I_R10] == 100.0
    assert m[MetricKey.I2T_R1] == pytest.approx(100 / 3)
    assert m[MetricKey.I2T_R5] == m[MetricKey.I2T_R10] == 100.0
    assert m[MetricKey.RSUM] == pytest.approx(100 / 6 + 100 / 3 + 400)
    assert m[MetricKey.MEAN_R1] == pytest.approx((100 / 6 + 100 / 3) / 2)  # DataComp's retrieval score
    assert m[MetricKey.T2I_MEDR] == 2.0  # sorted 1,2,2,2,3,3 -> (2+2)/2
    assert m[MetricKey.I2T_MEDR] == 2.0  # sorted 1,2,4
    assert m[MetricKey.T2I_MEANR] == pytest.approx(13 / 6)
    assert m[MetricKey.I2T_MEANR] == pytest.approx(7 / 3)
    assert set(m) == set(MetricKey) - {MetricKey.ACC1, MetricKey.ACC5, MetricKey.MACRO_F1,
                                       MetricKey.BALANCED_ACC}
    assert recall_from_ranks(t2i, 2) == pytest.approx(400 / 6)


def test_median_is_floored_median_of_one_based_ranks():
    assert median_rank(torch.tensor([1, 2])) == 1.0      # np.median 1.5 -> 1
    assert median_rank(torch.tensor([3, 1, 4])) == 3.0
    assert median_rank(torch.tensor([1, 4, 5, 9])) == 4.0  # 4.5 -> 4
    assert median_rank(torch.tensor([7])) == 7.0


# ------------------------------------------------------------------------- ties

def test_all_equal_embeddings_give_worst_case_ranks():
    n, per_image = 4, 3
    img, txt = torch.ones(n, 8), torch.ones(n * per_image, 8)
    c2i = torch.arange(n).repeat_interleave(per_image)
    t2i, i2t = retrieval_ranks(img, txt, c2i)
    assert t2i.tolist() == [n] * (n * per_image)                  # behind all n-1 others
    assert i2t.tolist() == [n * per_image - per_image + 1] * n    # behind all wrong captions
    m = retrieval_metrics(img, txt, c2i)
    assert m[MetricKey.T2I_R1] == 0.0 and m[MetricKey.I2T_R1] == 0.0


def test_tie_between_correct_and_one_wrong_item_is_rank_two():
    img = torch.tensor([[1., 0.], [1., 0.], [0., 1.]])  # images 0 and 1 identical
    txt = torch.tensor([[1., 0.], [0., 1.], [1., 0.]])
    t2i, i2t = retrieval_ranks(img, txt, torch.tensor([0, 2, 1]))
    assert t2i.tolist() == [2, 1, 2]
    # image 0: own caption c0 scores 1, wrong c2 also 1 -> rank 2; same for image 1
    assert i2t.tolist() == [2, 2, 1]


def test_ties_among_correct_items_do_not_hurt():
    img = torch.tensor([[1., 0.], [0., 1.]])
    txt = torch.tensor([[1., 0.], [1., 0.], [0., 1.]])  # two identical captions of image 0
    _, i2t = retrieval_ranks(img, txt, torch.tensor([0, 0, 1]))
    assert i2t.tolist() == [1, 1]


def test_image_without_captions_is_t2i_distractor_not_i2t_query():
    img = torch.tensor([[1., 0.], [0., 1.], [.6, .8]])  # image 2 has no caption
    txt = torch.tensor([[1., 0.], [.4, .6]])
    t2i, i2t = retrieval_ranks(img, txt, torch.tensor([0, 1]))
    assert t2i.tolist() == [1, 2]   # caption 1: image 2 (.72) beats its image 1 (.6)
    assert i2t.tolist() == [1, 1]   # only images 0 and 1 are queries
    m = retrieval_metrics(img, txt, torch.tensor([0, 1]))
    assert m[MetricKey.I2T_R1] == 100.0 and m[MetricKey.T2I_R1] == 50.0


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        retrieval_ranks(IMAGES, CAPTIONS, torch.tensor([0, 0, 1, 1, 2, 3]))
    with pytest.raises(ValueError):
        retrieval_ranks(IMAGES, CAPTIONS, C2I[:5])
    with pytest.raises(ValueError, match="no correct"):
        first_hit_ranks(IMAGES, CAPTIONS, torch.tensor([0, 1, 9]), C2I)
    with pytest.raises(ValueError, match="NaN"):
        retrieval_ranks(IMAGES, CAPTIONS.clone().fill_(float("nan")), C2I)


# ------------------------------------------------------------ chunked vs naive

SIZES = [(1, 1, 4), (7, 20, 8), (50, 250, 16), (333, 1000, 32)]
CHUNKS = [(1, None), (3, 1), (7, 17), (37, 101), (64, None), (1024, 100)]


def _blocks(n, m, chunk, gchunk):
    """Score blocks computed by retrieval_ranks (t2i + i2t), to skip slow configs."""
    def cdiv(a, b):
        return -(-a // b)
    return cdiv(m, chunk) * cdiv(n, gchunk or n) + cdiv(n, chunk) * cdiv(m, gchunk or m)


def _grid_data(n, m, d, seed, duplicate):
    """Embeddings on a k/4 grid: every dot product is exact in float32 whatever the
    summation order, so chunked and full-matrix scores agree bit for bit and ties
    (frequent with few grid values) are real ties."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(-3, 4, (n, d), generator=g).float() / 4
    txt = torch.randint(-3, 4, (m, d), generator=g).float() / 4
    c2i = torch.randint(0, n, (m,), generator=g)
    if duplicate and n > 1:
        img[n // 2:] = img[: n - n // 2].clone()     # duplicated images: correct/wrong ties
        txt[m // 2:] = txt[: m - m // 2].clone()     # duplicated captions, often of other images
    return img, txt, c2i


@pytest.mark.parametrize("duplicate", [False, True])
@pytest.mark.parametrize("n,m,d", SIZES)
def test_chunked_equals_naive_exactly(n, m, d, duplicate):
    img, txt, c2i = _grid_data(n, m, d, seed=n * 1000 + m, duplicate=duplicate)
    ref_t2i, ref_i2t = _naive_retrieval_ranks(img, txt, c2i)
    for chunk, gchunk in CHUNKS:
        if _blocks(n, m, chunk, gchunk) > 3000:
            continue  # tiny blocks on big cases only cost time; small cases cover them
        t2i, i2t = retrieval_ranks(img, txt, c2i, chunk_size=chunk, gallery_chunk=gchunk)
        assert torch.equal(t2i, ref_t2i), (chunk, gchunk)
        assert torch.equal(i2t, ref_i2t), (chunk, gchunk)
    m_ = retrieval_metrics(img, txt, c2i, chunk_size=37, gallery_chunk=101)
    for name, ref in (("t2i", ref_t2i), ("i2t", ref_i2t)):
        for k in (1, 5, 10):
            assert m_[MetricKey(f"{name}_R@{k}")] == pytest.approx(
                100 * (ref <= k).float().mean().item())
        assert m_[MetricKey(f"{name}_meanr")] == pytest.approx(ref.float().mean().item())
        assert m_[MetricKey(f"{name}_medr")] == float(int(ref.double().quantile(.5)))


def test_chunked_equals_naive_on_float_embeddings_up_to_rounding():
    """Normalised float embeddings: a different GEMM shape may round a score by an ulp,
    which can only flip a near-tie; any disagreement must sit on one."""
    g = torch.Generator().manual_seed(7)
    img = torch.nn.functional.normalize(torch.randn(120, 32, generator=g), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(600, 32, generator=g), dim=1)
    c2i = torch.randint(0, 120, (600,), generator=g)
    ref_t2i, _ = _naive_retrieval_ranks(img, txt, c2i)
    t2i, _ = retrieval_ranks(img, txt, c2i, chunk_size=5, gallery_chunk=33)
    sim64 = txt.double() @ img.double().T
    own = sim64.gather(1, c2i[:, None])
    for q in (t2i != ref_t2i).nonzero().flatten().tolist():
        gaps = (sim64[q] - own[q]).abs()
        gaps[c2i[q]] = float("inf")
        assert gaps.min() < 1e-5, q
    assert (t2i != ref_t2i).float().mean() < 0.01


# ------------------------------------------------------------------ classification

LOGITS = torch.tensor([
    [.7, .1, .1, .0, .0, .1],  # y=0: unique top                   top1 hit, pred 0
    [.4, .4, .1, .0, .0, .1],  # y=0: tied with class 1 -> pessimistic miss, pred 1
    [.1, .2, .3, .4, .5, .6],  # y=1: 4 classes above -> top5 hit (4 < 5), pred 5
    [.6, .5, .4, .3, .2, .1],  # y=5: 5 classes above -> top5 miss, pred 0
    [.0, .0, .9, .0, .0, .0],  # y=2: hit, pred 2
    [.1, .1, .1, .1, .1, .1],  # y=3: all tied -> 5 others >= -> top5 miss, pred 0
])
LABELS = torch.tensor([0, 0, 1, 5, 2, 3])
# acc1 = 2/6, acc5 = 4/6. preds = [0, 1, 5, 0, 2, 0], labels = [0, 0, 1, 5, 2, 3]
# per class (tp, support, predicted): 0 (1, 2, 3) F1 = 2/5;  1 (0, 1, 1) F1 = 0;
#   2 (1, 1, 1) F1 = 1;  3 (0, 1, 0) F1 = 0;  4 absent everywhere -> excluded;
#   5 (0, 1, 1) F1 = 0.  macro-F1 = (0.4 + 0 + 1 + 0 + 0) / 5 = 0.28
# balanced acc: recalls over classes in labels 0,1,2,3,5 = (1/2 + 0 + 1 + 0 + 0) / 5 = 0.3


def test_classification_hand_computed():
    assert pessimistic_predictions(LOGITS, LABELS).tolist() == [0, 1, 5, 0, 2, 0]
    assert per_sample_correct(LOGITS, LABELS).tolist() == [1, 0, 0, 0, 1, 0]
    assert per_sample_correct(LOGITS, LABELS, k=5).tolist() == [1, 1, 1, 0, 1, 0]
    m = classification_metrics(LOGITS, LABELS)
    assert set(m) == {MetricKey.ACC1, MetricKey.ACC5, MetricKey.MACRO_F1,
                      MetricKey.BALANCED_ACC}
    assert m[MetricKey.ACC1] == pytest.approx(100 * 2 / 6)
    assert m[MetricKey.ACC5] == pytest.approx(100 * 4 / 6)
    assert m[MetricKey.MACRO_F1] == pytest.approx(28.0)
    assert m[MetricKey.BALANCED_ACC] == pytest.approx(30.0)


def test_top5_with_fewer_than_five_classes_is_100():
    logits = torch.tensor([[0., 1., 2.], [2., 1., 0.]])
    m = classification_metrics(logits, torch.tensor([0, 2]))
    assert m[MetricKey.ACC5] == 100.0 and m[MetricKey.ACC1] == 0.0


def test_classification_bad_labels_raise():
    with pytest.raises(ValueError):
        classification_metrics(LOGITS, torch.tensor([0, 0, 1, 5, 2, 6]))
    with pytest.raises(ValueError, match="NaN"):
        classification_metrics(torch.full((2, 3), float("nan")), torch.tensor([0, 1]))


@pytest.mark.parametrize("seed,n,c", [(0, 50, 3), (1, 200, 10), (2, 500, 37)])
def test_classification_matches_naive(seed, n, c):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(0, 4, (n, c), generator=g).float()  # few values: many ties
    labels = torch.randint(0, max(c - 1, 1), (n,), generator=g)  # last class never a label
    preds, f1, bacc = _naive_classification(logits, labels)
    assert pessimistic_predictions(logits, labels).tolist() == preds
    m = classification_metrics(logits, labels)
    assert m[MetricKey.MACRO_F1] == pytest.approx(f1)
    assert m[MetricKey.BALANCED_ACC] == pytest.approx(bacc)
    assert m[MetricKey.ACC1] == pytest.approx(
        100 * sum(p == y for p, y in zip(preds, labels.tolist())) / n)
    for k in (1, 5):
        naive_hits = [sum(row[j] >= row[y] for j in range(c) if j != y) < k
                      for row, y in zip(logits.tolist(), labels.tolist())]
        assert per_sample_correct(logits, labels, k).tolist() == naive_hits


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_from_preds_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 8, (300,), generator=g)
    preds = torch.where(torch.rand(300, generator=g) < .5, labels,
                        torch.randint(0, 10, (300,), generator=g))  # classes 8, 9 pred-only
    m = classification_metrics_from_preds(preds, labels)
    assert m[MetricKey.MACRO_F1] == pytest.approx(
        100 * metrics.f1_score(labels, preds, average="macro", zero_division=0))
    assert m[MetricKey.BALANCED_ACC] == pytest.approx(
        100 * metrics.balanced_accuracy_score(labels, preds))


# ------------------------------------------------------------------------ doctests


def test_auto_chunk_bounds_block_memory_and_matches_reference():
    from harness.metrics.functional import BYTES_PER_SCORE, SCORING_BUDGET_BYTES, auto_chunk

    for gallery in (1, 1000, 100_000, 10_000_000):
        c = auto_chunk(gallery)
        assert c >= 1
        assert c == 1 or c * gallery * BYTES_PER_SCORE <= SCORING_BUDGET_BYTES
    assert auto_chunk(100_000) == 223
    g = torch.Generator().manual_seed(7)
    img = torch.nn.functional.normalize(torch.randn(60, 16, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(300, 16, generator=g), dim=-1)
    gt = torch.arange(300) % 60
    auto = hm.retrieval_ranks(img, txt, gt)
    tiny_budget = [hm.first_hit_ranks(txt, img, gt, torch.arange(60), chunk_size=7),
                   hm.first_hit_ranks(img, txt, torch.arange(60), gt, chunk_size=7)]
    assert torch.equal(auto[0], tiny_budget[0]) and torch.equal(auto[1], tiny_budget[1])
