"""Linear probe: the L-BFGS fit against scikit-learn, the seeded C search and k-shot
sampling, the never-fit-on-eval rule, and the task end to end with a fake dual encoder."""

from __future__ import annotations

import pytest
import torch

from harness.datasets.base import ClassificationData, DatasetError, ImageSet
from harness.datasets.views import ProbeData
from harness.metrics import probe as P

sklearn_lm = pytest.importorskip("sklearn.linear_model")


def blobs(n=240, d=6, k=3, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g, dtype=torch.float64) * 2
    y = torch.arange(n) % k
    return centres[y] + spread * torch.randn(n, d, generator=g, dtype=torch.float64), y



@pytest.mark.parametrize("c", [0.01, 1.0, 100.0])
def test_fit_matches_sklearn(c: float) -> None:
    """Both solved to 1e-10: the same objective has the same minimiser."""
    x, y = blobs(spread=2.0)
    ours = torch.softmax(P.fit_logistic(x, y, 3, c, tol=1e-10).logits(x), 1).numpy()
    ref = sklearn_lm.LogisticRegression(C=c, max_iter=10_000, tol=1e-12).fit(x.numpy(), y.numpy())
    assert abs(ours - ref.predict_proba(x.numpy())).max() < 1e-4


def test_search_is_seeded_and_prefers_the_better_c() -> None:
    x, y = blobs(spread=3.0, d=40, n=120)
    c1, tried1 = P.select_c(x, y, 3, P.ProbeOptions(seed=0))
    c2, tried2 = P.select_c(x, y, 3, P.ProbeOptions(seed=0))
    assert c1 == c2 and tried1 == tried2
    assert len(tried1) == 7 + 2 * 3
    # the chosen C ties the best held-out top-1 (within 2 of the 24 held-out images) ...
    acc = {t["c"]: t["heldout_acc1"] for t in tried1}
    best = max(acc.values())
    assert acc[c1] >= best - 2 * 100 / 24 - 1e-9
    # ... and every smaller C either does not tie it or falls a standard error short in likelihood
    ties = [t for t in tried1 if t["heldout_acc1"] >= best - 2 * 100 / 24 - 1e-9]
    top = max(ties, key=lambda t: t["heldout_loglik"])
    assert all(t["heldout_loglik"] < top["heldout_loglik"] - top["heldout_loglik_se"] for t in ties if t["c"] < c1)


def test_a_tie_goes_to_the_stronger_regularisation_unless_its_probabilities_are_flat() -> None:
    # held-out top-1 within one image of the best is a tie; the smallest C whose likelihood is
    # within a standard error of the best tie wins
    tried = {1e-2: (90.0, -2.0, 0.1), 1.0: (94.0, -0.40, 0.05), 1e2: (95.0, -0.38, 0.05), 1e4: (96.0, -0.37, 0.05)}
    assert P.choose_c(tried, n_held=100, tie_images=1) == 1e2
    assert P.choose_c(tried, n_held=100, tie_images=2) == 1.0
    assert P.choose_c(tried, n_held=100, tie_images=0) == 1e4
    assert P.choose_c(tried, n_held=100, tie_images=10) == 1.0  # 1e-2 ties on accuracy, not on likelihood


@pytest.fixture
def one_thread():
    """Tiny fits are latency-bound: on a busy machine a second OpenMP thread only waits."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_last_bit_differences_in_the_features_change_neither_c_nor_predictions(one_thread) -> None:
    """Embeddings that differ at float32 rounding level (relative 1e-6, as between CPU kernels)
    give the same C and the same predictions; the features are used in float64."""
    x, y = blobs(n=90, d=6, k=3, spread=2.5, seed=3)
    x = x.float()
    opts = P.ProbeOptions(c_grid=(1e-2, 1.0, 1e2), refine=1, search_iter=30, max_iter=100)
    ref = P.fit_probe(x, y, 3, opts)
    assert ref.weight.dtype == torch.float64
    for seed in range(2):
        g = torch.Generator().manual_seed(seed)
        moved = x * (1 + 1e-6 * torch.randn(x.shape, generator=g))
        assert (moved != x).any()
        got = P.fit_probe(moved, y, 3, opts)
        assert got.c == ref.c
        assert torch.equal(got.logits(moved).argmax(1), ref.logits(x).argmax(1))


def test_one_shot_falls_back_to_the_default_c() -> None:
    x, y = blobs(n=3)
    c, tried = P.select_c(x, y, 3, P.ProbeOptions())
    assert c == 1.0 and tried[0]["heldout_acc1"] is None


def test_holdout_is_stratified_and_disjoint() -> None:
    labels = [i % 4 for i in range(40)]
    fit, held = P.stratified_holdout(labels, 0.2, seed=1)
    assert sorted(fit + held) == list(range(40)) and [labels[i] for i in held].count(2) == 2
    assert P.stratified_holdout([0, 0, 1], 0.2, 0) is None


def test_shots_per_class() -> None:
    labels = [i % 5 for i in range(50)]
    idx = P.sample_shots(labels, 3, seed=0)
    assert len(idx) == 15 and all([labels[i] for i in idx].count(c) == 3 for c in range(5))
    assert idx == P.sample_shots(labels, 3, seed=0) != P.sample_shots(labels, 3, seed=1)


def _cls(split, labels):
    return ClassificationData("toy", split, ImageSet([None] * len(labels)), list(labels), ["a", "b", "c"],
                              ["a {}."], f"fp-{split}")


def test_probe_data_refuses_the_same_split() -> None:
    with pytest.raises(DatasetError, match="never fitted on the split it is evaluated on"):
        ProbeData(_cls("train", [0, 1, 2]), _cls("train", [0, 1, 2]))


class FeatureTable:
    """A dual encoder whose image 'pixels' are ids into a feature table."""

    name, embed_dim = "features", 6

    def __init__(self, feats):
        self.feats = feats

    def image_transform(self):
        return _ident

    def tokenize(self, texts):
        return texts

    def encode_images(self, pixels):
        return self.feats[pixels[:, 0].long()].float()

    def encode_texts(self, tokens):
        raise AssertionError("a linear probe encodes no text")


def _ident(i):
    return torch.tensor([float(i)])


class IdImages(ImageSet):
    def __init__(self, ids):
        super().__init__([f"img{i}" for i in ids])
        self.ids = list(ids)

    def load(self, index):
        return self.ids[index]


def test_task_fits_on_train_only_and_reports_classification_metrics() -> None:
    from harness.tasks import linear_probe as LP
    from harness.tasks.encode import EncodeOptions

    x, y = blobs(n=300, spread=2.5)
    train = ClassificationData("toy", "train", IdImages(range(240)), y[:240].tolist(), ["a", "b", "c"], ["{}"], "t")
    test = ClassificationData("toy", "test", IdImages(range(240, 300)), y[240:].tolist(), ["a", "b", "c"], ["{}"], "e")
    quick = P.ProbeOptions(c_grid=(0.01, 1.0, 100.0), refine=1)  # the search itself is tested above
    res = LP.evaluate(FeatureTable(x), ProbeData(train, test), EncodeOptions(batch_size=32), probe_opts=quick)
    ref = sklearn_lm.LogisticRegression(C=res.details["probe_c"], max_iter=10_000, tol=1e-12)
    ref.fit(x[:240].float().double().numpy(), y[:240].numpy())
    want = 100 * (ref.predict(x[240:].float().double().numpy()) == y[240:].numpy()).mean()
    assert res.metrics["acc1"] == pytest.approx(want)
    assert set(res.metrics) == {"acc1", "acc5", "macro_f1", "balanced_acc"} and res.metrics["acc5"] == 100.0
    assert res.per_query["label"] == y[240:].tolist() and len(res.per_query["pred"]) == 60
    shot = LP.evaluate(FeatureTable(x), ProbeData(train, test), EncodeOptions(batch_size=32), shots=2,
                       probe_opts=quick)
    assert shot.details["probe_train_images"] == 6 and shot.details["shots"] == 2


MANIFEST = """
schema_version: 1
datasets:
  toyfolder:
    tasks: [zeroshot, linear_probe]
    format: imagefolder
    source: {kind: local, folder: toyfolder}
    default_split: test
    splits: {train: {}, test: {}}
    classes: {names: folders, templates: ["a photo of a {}."]}
    license: test
    citation: test
"""


def test_imagefolder_offers_a_probe_view_of_train_and_eval(tmp_path) -> None:
    from imagefiles import write_jpeg

    from harness.datasets import FORMATS, DatasetRequest, TaskKind, build_registry
    from harness.datasets.manifest import parse_manifest
    from harness.datasets.resources import resource

    for split, n in (("train", 4), ("test", 2)):
        for cls in ("cat", "dog"):
            for i in range(n):
                write_jpeg(tmp_path / "toyfolder" / split / cls / f"{i}.jpg")
    reg = build_registry(parse_manifest(MANIFEST, "m.yaml", FORMATS, resource))
    meta = reg.get("toyfolder")
    data = meta.load(DatasetRequest(split="test", task=TaskKind.LINEAR_PROBE, data_root=str(tmp_path)))
    assert (len(data.train.images), len(data.eval.images)) == (8, 4) and data.counts()["train_images"] == 8
    assert data.train.labels == [0] * 4 + [1] * 4 and data.eval.classnames == ["cat", "dog"]
    with pytest.raises(DatasetError, match="never on the split it is evaluated on"):
        meta.load(DatasetRequest(split="train", task=TaskKind.LINEAR_PROBE, data_root=str(tmp_path)))


def overlapping(n=2000, d=32, k=4, seed=0):
    """Class clusters that overlap (a probe reaches ~80%, not 100%), split in halves."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g, dtype=torch.float64) * 0.35
    y = torch.randint(0, k, (2 * n,), generator=g)
    x = centres[y] + torch.randn(2 * n, d, generator=g, dtype=torch.float64)
    return x[:n], y[:n], x[n:], y[n:]


@pytest.mark.parametrize("seed", [0, 1])
def test_probe_predicts_as_sklearn_does_at_the_recorded_c(seed) -> None:
    """The whole protocol (search, refit, sklearn's stopping rule): at the C it records, its test
    predictions are LogisticRegression(C)'s, default tolerance, CLIP's max_iter, on >= 99.5% of
    the items."""
    x, y, xt, yt = overlapping(seed=seed)
    probe = P.fit_probe(x, y, 4)
    ours = probe.logits(xt).argmax(1).numpy()
    ref = sklearn_lm.LogisticRegression(C=probe.c, max_iter=1000).fit(x.numpy(), y.numpy())
    assert (ours == ref.predict(xt.numpy())).mean() >= 0.995
    assert 0.6 < (ours == yt.numpy()).mean() < 0.95  # the fixture is not separable: C matters


def test_a_fit_stops_where_sklearn_stops() -> None:
    """Largest gradient entry of the mean objective within ``tol`` (scipy's gtol, as
    LogisticRegression's lbfgs), and a tighter tol lands nearer the exact minimiser."""
    x, y, _, _ = overlapping(n=600, seed=2)

    def max_grad(probe: P.LinearProbe) -> float:
        w, b = probe.weight.clone().requires_grad_(True), probe.bias.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + (w * w).sum() / (2 * probe.c * len(y))
        loss.backward()
        return float(torch.cat([w.grad.flatten(), b.grad]).abs().max())

    loose, tight = P.fit_logistic(x, y, 4, 10.0), P.fit_logistic(x, y, 4, 10.0, tol=1e-7)
    assert max_grad(tight) <= 1e-7 < 1e-5 < max_grad(loose) <= 1e-4


def test_the_search_returns_its_fit_at_the_chosen_c() -> None:
    x, y, _, _ = overlapping(n=400, seed=3)
    opts = P.ProbeOptions(c_grid=(1e-2, 1.0, 1e2), refine=1)
    c, search, start = P.search_c(x, y, 4, opts)
    assert (c, search) == P.select_c(x, y, 4, opts) and start.c == c
    fit, _ = P.stratified_holdout(y.tolist(), opts.holdout, opts.seed)
    cold = P.fit_logistic(x[fit], y[fit], 4, c, opts.search_iter)
    assert torch.allclose(start.logits(x).softmax(1), cold.logits(x).softmax(1), atol=2e-3)
    assert P.search_c(x[:3], y[:3], 4, opts)[2] is None  # nothing held out, nothing fitted


def test_a_fit_leaves_the_blas_threads_as_it_found_them() -> None:
    """L-BFGS-B runs on one BLAS thread inside the fit; the caller's setting comes back after."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    x, y, _, _ = overlapping(n=200, seed=4)
    P.fit_logistic(x.float(), y, 4, 1.0)
    assert [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"] == before


def test_the_objective_is_the_mean_cross_entropy_plus_l2_with_its_exact_gradient() -> None:
    """The fused loss / gradient scipy minimises, against torch autograd on the same float64
    objective (the gradient's product is computed transposed for speed: same values)."""
    import contextlib

    import numpy as np

    g = torch.Generator().manual_seed(3)
    n, d, k, l2 = 257, 40, 5, 0.03
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    theta = torch.randn(d * k + k, generator=g, dtype=torch.float64) * 0.3
    obj = P._Objective(x.numpy(), y.numpy(), k, l2, threads=contextlib.nullcontext)
    loss, grad = obj(theta.numpy().copy())
    t = theta.clone().requires_grad_(True)
    w, b = t[: d * k].view(d, k), t[d * k:]
    ref = torch.nn.functional.cross_entropy(x @ w + b, y) + 0.5 * l2 * (w * w).sum()
    ref.backward()
    ref = ref.detach()
    assert abs(loss - ref.item()) < 1e-12 * max(1.0, abs(ref.item()))
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-10, atol=1e-13)
