"""Cross-encoder retrieval: top-k candidates, reranked ranks, pair scoring that reuses work."""


import pytest
import torch

from harness.core.errors import UserError
from harness.core.interfaces import CrossEncoder, DualEncoder, FactoredCrossEncoder, LoadOptions, ModelKind, ModelMeta
from harness.datasets.base import ImageSet, RetrievalData
from harness.metrics import functional as M
from harness.tasks import rerank, retrieval
from harness.tasks.encode import EncodeOptions
from harness.tasks.hard_negatives import hard_negative_accuracy
from tests.fakes import TableDual, id_pixels

OPTS = EncodeOptions(batch_size=8)


# ------------------------------------------------------------------ fixtures: id-world models

class IdImages(ImageSet):
    """Images are their own indices, so fake models can look up ground truth."""

    def __init__(self, n):
        super().__init__([None] * n)

    def load(self, index):
        return index


def make_data(n_images=12, per_image=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    c2i = torch.arange(n_images).repeat_interleave(per_image)[torch.randperm(n_images * per_image, generator=g)]
    captions = [f"c{j}" for j in range(len(c2i))]
    # one caption-less distractor image at the end
    return RetrievalData("toy", "test", IdImages(n_images + 1), captions, c2i.tolist(), "fp")


class FactoredScorer:
    """A FactoredCrossEncoder from a pair function of (image ids, caption ids); counts tower calls."""

    name = "factored"

    def __init__(self, pair_fn):
        self.pair_fn, self.images_seen, self.texts_seen = pair_fn, [], []

    def image_transform(self):
        return id_pixels

    def image_features(self, pixels):
        ids = pixels[:, 0].long()
        self.images_seen += ids.tolist()
        return ids

    def text_features(self, texts):
        ids = torch.tensor([int(t[1:]) for t in texts])
        self.texts_seen += ids.tolist()
        return {"ids": ids}

    def score_features(self, image_feats, text_feats):
        return self.pair_fn(image_feats, text_feats["ids"])

    def score_pairs(self, pixels, texts):
        return self.score_features(self.image_features(pixels), self.text_features(texts))


class PlainScorer:
    """A CrossEncoder with score_pairs only (ViLT-like: no reusable towers)."""

    name = "plain"

    def __init__(self, pair_fn):
        self.pair_fn, self.pairs_seen = pair_fn, 0

    def image_transform(self):
        return id_pixels

    def score_pairs(self, pixels, texts):
        self.pairs_seen += len(texts)
        return self.pair_fn(pixels[:, 0].long(), torch.tensor([int(t[1:]) for t in texts]))


def oracle(data):
    c2i = torch.tensor(data.caption_to_image)
    return lambda img, cap: (c2i[cap] == img).float()


def run(cross, data, prefilter=None, k=5):
    plan = rerank.plan_for(len(data.images), len(data.captions), k, prefilter, prefilter and "pre", 10_000)
    return retrieval.evaluate(cross, data, OPTS, plan=plan)


# ---------------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("q,g,k,chunk", [(7, 30, 5, None), (50, 9, 4, 3), (20, 20, 25, 6)])
def test_topk_candidates_match_full_sort(q, g, k, chunk):
    gen = torch.Generator().manual_seed(q * g)
    qe, ge = torch.randn(q, 8, generator=gen), torch.randn(g, 8, generator=gen)
    scores, index = M.topk_candidates(qe, ge, k, chunk)
    full = (qe @ ge.T).tolist()
    kk = min(k, g)
    naive = [sorted(range(g), key=lambda j: (-row[j], j))[:kk] for row in full]  # ties: lower index first
    assert index.tolist() == naive
    assert torch.allclose(scores, torch.tensor([[row[j] for j in r] for row, r in zip(full, naive)]), atol=1e-5)


def test_topk_ties_keep_gallery_order():
    s, i = M.topk_candidates(torch.ones(1, 2), torch.ones(4, 2), 3)
    assert i.tolist() == [[0, 1, 2]] and s.tolist() == [[2.0, 2.0, 2.0]]


def test_reranked_ranks_hand_cases():
    cand = torch.tensor([[3, 1, 2], [0, 1, 2], [0, 1, 2]])
    pre = torch.tensor([[.9, .8, .7]] * 3)
    labels_g = torch.arange(4)
    # q0: label 2, reranker puts cand 2 first -> 1; q1: label 1, full tie on both keys with
    # nothing: the reranker ties 0 and 1, prefilter breaks it for 0 (wrong) -> 2;
    # q2: label 3 absent from candidates -> fallback 7
    rr = torch.tensor([[.1, .2, .9], [.5, .5, .1], [.3, .2, .1]])
    out = M.reranked_first_hit_ranks(cand, rr, pre, torch.tensor([2, 1, 3]), labels_g, torch.tensor([5, 6, 7]))
    assert out.tolist() == [1, 2, 7]
    # equal on both keys: the wrong item ranks first (ties never favour the model)
    out = M.reranked_first_hit_ranks(torch.tensor([[0, 1]]), torch.tensor([[1., 1.]]), torch.tensor([[.5, .5]]),
                                     torch.tensor([1]), labels_g, torch.tensor([9]))
    assert out.tolist() == [2]


def test_reranked_ranks_reject_nan():
    with pytest.raises(ValueError, match="NaN"):
        M.reranked_first_hit_ranks(torch.tensor([[0]]), torch.tensor([[float("nan")]]), torch.tensor([[0.]]),
                                   torch.tensor([0]), torch.arange(1), torch.tensor([1]))


# ------------------------------------------------------------------------- the rerank task

def prefilter_ranks(data, dual):
    c2i = torch.tensor(data.caption_to_image)
    img = dual.encode_images(torch.arange(len(data.images)).float()[:, None])
    txt = dual.encode_texts(torch.arange(len(data.captions)))
    return M.retrieval_ranks(img, txt, c2i)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_oracle_reaches_the_prefilter_recall_ceiling(k):
    data = make_data()
    dual = TableDual.random(len(data.images), len(data.captions))
    t2i_pre, i2t_pre = prefilter_ranks(data, dual)
    res = run(FactoredScorer(oracle(data)), data, dual, k)
    t2i, i2t = torch.tensor(res.per_query["t2i_rank"]), torch.tensor(res.per_query["i2t_rank"])
    assert M.recall_from_ranks(t2i, 1) == M.recall_from_ranks(t2i_pre, k)
    assert M.recall_from_ranks(i2t, 1) == M.recall_from_ranks(i2t_pre, k)
    # queries whose item missed the top-k keep their prefilter rank
    assert torch.equal(t2i[t2i_pre > k], t2i_pre[t2i_pre > k])
    assert res.metrics["t2i_R@1"] < 100.0  # the prefilter is random: the ceiling is real


def test_constant_scorer_keeps_the_prefilter_order():
    data = make_data()
    dual = TableDual.random(len(data.images), len(data.captions))
    t2i_pre, i2t_pre = prefilter_ranks(data, dual)
    res = run(FactoredScorer(lambda i, c: torch.zeros(len(i))), data, dual, 6)
    assert res.per_query["t2i_rank"] == t2i_pre.tolist()
    assert res.per_query["i2t_rank"] == i2t_pre.tolist()


class TiedDual(TableDual):
    """Embeddings with entries +-0.5 in 4 dims: unit norm, and dot products tie often."""

    def __init__(self, n_images, n_captions, seed=3):
        g = torch.Generator().manual_seed(seed)
        super().__init__((torch.randint(0, 2, (n_images, 4), generator=g) - 0.5).float(),
                         (torch.randint(0, 2, (n_captions, 4), generator=g) - 0.5).float())


@pytest.mark.parametrize("seed,k", [(0, 3), (1, 5), (2, 1)])
def test_fit_selection_and_run_rank_alike_with_ties(seed, k):
    """``vlbench fit`` selects epochs with ``fusion.eval.rerank_ranks`` on cached features;
    ``vlbench run`` ranks through this task: the same ranks, ties included."""
    from harness.training.fusion_eval import rerank_ranks as fit_ranks

    data = make_data(n_images=15, per_image=3, seed=seed)
    dual = TiedDual(len(data.images), len(data.captions), seed)
    def levels(i, c):  # three score values: many ties
        return ((i * 7 + c * 3 + seed) % 3).float()

    res = run(FactoredScorer(levels), data, dual, k)
    t2i, i2t = fit_ranks(dual.img, dual.txt, data.caption_to_image, levels, k)
    assert res.per_query == {"t2i_rank": t2i.tolist(), "i2t_rank": i2t.tolist()}
    pre_scores = dual.txt @ dual.img.T
    assert (pre_scores.topk(2, dim=1).values.diff(dim=1) == 0).any()  # prefilter ties at the top
    assert len(set(t2i.tolist())) > 2  # not degenerate


def test_all_pairs_with_a_dot_product_scorer_equals_the_dual_encoder():
    data = make_data()
    dual = TableDual.random(len(data.images), len(data.captions))
    dot = FactoredScorer(lambda i, c: (dual.img[i] * dual.txt[c]).sum(1))
    res = run(dot, data, prefilter=None)
    ref = retrieval.evaluate(dual, data, OPTS)
    assert res.per_query == ref.per_query
    assert res.metrics == pytest.approx(ref.metrics)
    assert res.timings["rerank"].items == len(data.images) * len(data.captions)


def test_each_image_and_caption_is_encoded_once_and_plain_scorers_agree():
    data = make_data(n_images=20, per_image=2)
    dual = TableDual.random(len(data.images), len(data.captions))
    factored, plain = FactoredScorer(oracle(data)), PlainScorer(oracle(data))
    a, b = run(factored, data, dual, 4), run(plain, data, dual, 4)
    assert sorted(factored.images_seen) == sorted(set(factored.images_seen))  # vision tower once per image
    assert sorted(factored.texts_seen) == sorted(set(factored.texts_seen))
    assert a.per_query == b.per_query
    assert plain.pairs_seen == a.timings["rerank"].items > 0
    assert a.timings["rerank"].items <= 4 * (len(data.captions) + len(data.images))


def test_protocols_recognised():
    f = FactoredScorer(lambda i, c: i)
    assert isinstance(f, FactoredCrossEncoder) and isinstance(f, CrossEncoder)
    assert not isinstance(PlainScorer(None), FactoredCrossEncoder)
    assert isinstance(TableDual.random(1, 1), DualEncoder)


def test_over_budget_without_prefilter_is_a_clear_error():
    with pytest.raises(ValueError, match="pair budget.*--prefilter"):
        rerank.plan_for(2000, 10_000, 128, None, None, pair_budget=1_000_000)


def test_cross_hard_negatives_equal_dual_ones_for_a_dot_scorer():
    data = make_data(n_images=6, per_image=2)
    data.info["hard_negative_pairs"] = [[0, 1, "colour_swap"], [2, 3, "relation_swap"], [4, 5, "shape_swap"]]
    dual = TableDual.random(len(data.images), len(data.captions), seed=5)
    dot = FactoredScorer(lambda i, c: (dual.img[i] * dual.txt[c]).sum(1))
    res = run(dot, data, prefilter=None)  # all pairs; the hard negatives ride in the same pass
    got = {k: v for k, v in res.metrics.items() if k.startswith("hn_")}
    assert sorted(dot.images_seen) == list(range(len(data.images)))  # each image through the towers once
    img = dual.encode_images(torch.arange(len(data.images)).float()[:, None])
    want = hard_negative_accuracy(img, dual.txt, data.caption_to_image, data.info["hard_negative_pairs"])
    assert got == want and set(got) == {"hn_colour", "hn_relation", "hn_shape", "hn_binding"}
    # the sidecar keeps the same comparison groups on both paths (for the leaderboard's intervals)
    ref = retrieval.evaluate(dual, data, OPTS)
    groups = {k: v for k, v in res.per_query.items() if k.startswith("hn_")}
    assert groups == {k: v for k, v in ref.per_query.items() if k.startswith("hn_")}
    assert set(groups) == set(got) and groups["hn_binding"] == [groups["hn_colour"][0], groups["hn_shape"][0]]


# ------------------------------------------------------------------------ through the runner

class DotCross:
    """tiny-clip-synth's towers as a factored cross-encoder scoring by dot product."""

    def __init__(self, dual):
        self.dual, self.name, self.checkpoint = dual, "dot-cross", dual.checkpoint

    def image_transform(self):
        return self.dual.image_transform()

    def image_features(self, pixels):
        return self.dual.encode_images(pixels)

    def text_features(self, texts):
        return self.dual.encode_texts(self.dual.tokenize(texts))

    def score_features(self, a, b):
        return (a * b).sum(1)

    def score_pairs(self, pixels, texts):
        return self.score_features(self.image_features(pixels), self.text_features(texts))


def test_runner_reranks_a_registered_cross_encoder(tmp_path, monkeypatch):
    from harness import models
    from harness.run.runner import RunOptions, RunSpec, run_one

    def load(options: LoadOptions):
        return DotCross(models.resolve("tiny-clip-synth").load(options))

    meta = ModelMeta("dot-cross-test", "test", ModelKind.CROSS, "test:dot", load, prefilter="tiny-clip-synth")
    monkeypatch.setitem(models.MODELS._entries, "dot-cross-test", meta)
    monkeypatch.setitem(models.MODELS._canonical, "dot-cross-test", "dot-cross-test")
    opts = RunOptions(limit=200, num_workers=0, rerank_k=5)
    cross = run_one(RunSpec("dot-cross-test", "synthetic", "retrieval", "test", opts), tmp_path).record
    dual = run_one(RunSpec("tiny-clip-synth", "synthetic", "retrieval", "test", opts), tmp_path).record
    assert cross.options["rerank_k"] == 5 and cross.options["prefilter"] == "tiny-clip-synth"
    assert cross.options["all_pairs"] is False and "rerank_k" not in dual.options
    assert {"image_encode", "text_encode", "scoring", "rerank"} <= set(cross.timings)
    # same scores as the prefilter: reranking cannot change a single rank or metric
    assert cross.metrics == pytest.approx(dual.metrics) and "hn_binding" in cross.metrics
    assert cross.timings["rerank"].items > 0


def test_expand_gives_blip_two_retrieval_rows_and_cross_encoders_no_zeroshot():
    from harness.run.runner import RunOptions, expand

    # synthetic also offers caption_selection (issue 12), which gets BLIP's two rows too, and linear_probe
    blip = expand("blip", "synthetic", None, "test", RunOptions())
    assert sorted((s.task, str(s.options.rerank_k)) for s in blip if s.task in ("retrieval", "zeroshot")) == [
        ("retrieval", "0"), ("retrieval", "None"), ("zeroshot", "None")]
    assert sorted(str(s.options.rerank_k) for s in blip if s.task == "caption_selection") == ["0", "None"]
    vilt = expand("vilt", "synthetic", None, "test", RunOptions())
    assert [s.task for s in vilt if s.task != "caption_selection"] == ["retrieval"]
    assert "zeroshot" not in [s.task for s in vilt]


def test_zeroshot_with_a_cross_encoder_is_a_user_error():
    from harness.tasks import zeroshot

    with pytest.raises(UserError, match="needs a dual encoder"):
        zeroshot.evaluate(PlainScorer(None), None, OPTS)
