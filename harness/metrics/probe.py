"""Linear probes on frozen features: multinomial logistic regression fitted with L-BFGS, its L2
strength chosen on a held-out part of the training data (the CLIP paper's protocol, Radford et
al. 2021, appendix A.3, which used scikit-learn's L-BFGS logistic regression and swept the
strength on validation data). Pure functions on tensors, no model code.

The objective is scikit-learn's: ``0.5 * ||W||^2 + C * sum_i CE(x_i W + b, y_i)`` (bias not
penalised), minimised here as ``mean CE + ||W||^2 / (2 C n)``, the same minimiser, so a
fitted probe matches ``sklearn.linear_model.LogisticRegression(C=C)`` (tested).

    >>> import torch
    >>> x = torch.tensor([[0.], [1.], [4.], [5.]]); y = torch.tensor([0, 0, 1, 1])
    >>> probe = fit_logistic(x, y, 2, c=10.0)
    >>> probe.logits(x).argmax(1).tolist()
    [0, 0, 1, 1]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from harness.core.errors import OptionError

__all__ = ["ProbeOptions", "LinearProbe", "fit_logistic", "stratified_holdout", "sample_shots", "choose_c",
           "select_c", "search_c", "fit_probe"]


@dataclass(frozen=True)
class ProbeOptions:
    holdout: float = 0.2        # share of each class's training images held out to choose C
    seed: int = 0               # held-out split and k-shot sampling
    # coarse grid of C = 1 / lambda (CLIP swept 1e-6..1e6), then ``refine`` rounds that try the
    # best value times 10^(+-step), halving the step each round (a seeded, fixed search)
    c_grid: tuple[float, ...] = (1e-6, 1e-4, 1e-2, 1.0, 1e2, 1e4, 1e6)
    refine: int = 3
    search_iter: int = 100      # L-BFGS iterations per fit of the search (scikit-learn's default)
    max_iter: int = 1000        # ... of the final refit on all of train (CLIP's max_iter)
    # every fit stops where LogisticRegression(tol=tol) stops: largest gradient entry of the mean
    # objective <= tol. Not scikit-learn's default 1e-4: a fit stopped that early sits where its
    # path happened to be, and embeddings perturbed at float32 rounding level (another CPU) moved
    # fusion-late's qa probe 0.8 points and failed the gate; at 1e-8 it does not move (RESULTS.md)
    tol: float = 1e-8
    default_c: float = 1.0      # when some class has too few images to hold any out (e.g. 1-shot)
    # held-out top-1 within this many held-out images of the best is a tie, and a tie goes to the
    # smallest C (the strongest L2): embeddings that differ in their last bits between CPU kernels
    # move a held-out accuracy by an image or two, and must not move the chosen C with it
    tie_images: int = 2


@dataclass
class LinearProbe:
    weight: torch.Tensor  # (D, C)
    bias: torch.Tensor    # (C,)
    c: float
    search: list[dict] = field(default_factory=list)  # [{"c": ..., "heldout_acc1": ...}, ...]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.weight) @ self.weight + self.bias


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, c: float, max_iter: int = 1000,
                 init: LinearProbe | None = None, tol: float = 1e-4) -> LinearProbe:
    """scikit-learn's solver on the objective above, in float64, from zeros or from ``init`` (a
    warm start: the search fits neighbouring C values): scipy's L-BFGS-B on a fused loss and
    gradient, stopped where ``LogisticRegression(tol=tol, max_iter=max_iter)`` stops (largest
    gradient entry <= ``tol``, or a relative loss change <= 64 eps). The fit runs in numpy on
    the CPU whatever the features' device: numpy's element-wise work spawns no threads, and its
    BLAS threads only the large products (torch's OpenMP threads cost more than a small fit).
    L-BFGS-B's own vector work runs on one BLAS thread: threads woken for vectors of a few
    thousand entries made it 15-25x slower on two busy cores (benchmarks/RESULTS.md)."""
    import numpy as np
    from scipy.optimize import minimize
    from threadpoolctl import ThreadpoolController

    xs = x.detach().double().cpu().numpy()
    n, d = xs.shape
    if n == 0:
        raise ValueError("no training samples")
    theta = np.zeros(d * num_classes + num_classes)  # W (D, classes) row-major, then the bias
    if init is not None:
        theta[: d * num_classes] = init.weight.double().cpu().numpy().ravel()
        theta[d * num_classes:] = init.bias.double().cpu().numpy()
    blas = ThreadpoolController().select(user_api="blas")
    threads = max([lib["num_threads"] for lib in blas.info()], default=1)
    objective = _Objective(xs, y.long().cpu().numpy(), num_classes, l2=1.0 / (c * n),
                           threads=lambda: blas.limit(limits=threads))
    with blas.limit(limits=1):
        res = minimize(objective, theta, jac=True, method="L-BFGS-B",
                       options={"maxiter": max_iter, "gtol": tol, "ftol": 64 * np.finfo(float).eps, "maxls": 50})
    w = torch.from_numpy(res.x[: d * num_classes].reshape(d, num_classes).copy()).to(x.device)
    return LinearProbe(w, torch.from_numpy(res.x[d * num_classes:].copy()).to(x.device), c)


class _Objective:
    """``mean CE + l2 / 2 * ||W||^2`` and its gradient for scipy: one product of the features
    forward (x @ W) and one back ((residual^T @ x)^T), inside ``threads()`` (a context giving
    BLAS its threads back for them)."""

    def __init__(self, x, y, num_classes: int, l2: float, threads):
        import numpy as np

        self.x, self.y, self.k, self.l2, self.threads = x, y, num_classes, l2, threads
        self.rows = np.arange(len(y))

    def __call__(self, theta):
        with self.threads():
            return self._loss_grad(theta)

    def _loss_grad(self, theta):
        import numpy as np

        n, d = self.x.shape
        w, b = theta[: d * self.k].reshape(d, self.k), theta[d * self.k:]
        z = self.x @ w
        z += b
        top = z.max(axis=1, keepdims=True)  # log-sum-exp without overflow
        p = np.exp(z - top)
        total = p.sum(axis=1)
        loss = (np.log(total).sum() + top.sum() - z[self.rows, self.y].sum()) / n + 0.5 * self.l2 * w.ravel() @ w.ravel()
        p /= total[:, None]           # softmax; minus the one-hot, over n: d loss / d z
        p[self.rows, self.y] -= 1.0
        p /= n
        grad = np.empty_like(theta)
        # (p^T x)^T, not x^T p: the same numbers bit for bit (OpenBLAS 0.3.31, 810 shapes, 1 and 2
        # threads) in half the time -- x^T p packs all of x for a k-column product
        grad[: d * self.k].reshape(d, self.k)[...] = (p.T @ self.x).T
        grad[: d * self.k] += self.l2 * w.ravel()
        grad[d * self.k:] = p.sum(axis=0)
        return float(loss), grad


def stratified_holdout(labels: list[int], frac: float, seed: int) -> tuple[list[int], list[int]] | None:
    """(fit, held-out) indices: ``round(frac * n_c)`` of each class held out, at least one,
    leaving at least one to fit; None when some class has fewer than 2 samples.

    >>> stratified_holdout([0, 0, 0, 0, 1, 1], 0.25, seed=0)
    ([0, 1, 2, 4], [3, 5])
    """
    import random

    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    if any(len(v) < 2 for v in by_class.values()):
        return None
    rng = random.Random(seed)
    held: list[int] = []
    for y in sorted(by_class):
        idx = by_class[y]
        k = min(len(idx) - 1, max(1, round(frac * len(idx))))
        held += rng.sample(idx, k)
    held_set = set(held)
    return [i for i in range(len(labels)) if i not in held_set], sorted(held)


def sample_shots(labels: list[int], shots: int, seed: int) -> list[int]:
    """``shots`` seeded indices per class (all of a class that has fewer), sorted.

    >>> sample_shots([0, 0, 0, 1, 1, 2], 2, seed=0)
    [1, 2, 3, 4, 5]
    """
    import random

    if shots < 1:
        raise OptionError(f"--shots must be >= 1, got {shots}")
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    return sorted(i for y in sorted(by_class) for i in (rng.sample(by_class[y], shots)
                                                        if len(by_class[y]) > shots else by_class[y]))


def _heldout_fit(parts, num_classes, c, opts, init) -> tuple[tuple[float, float, float], LinearProbe]:
    """((held-out top-1 %, held-out mean log-likelihood, its standard error), probe);
    ``parts`` = (fitted x, fitted y, held-out x, held-out y)."""
    x_fit, y_fit, x_held, target = parts
    probe = fit_logistic(x_fit, y_fit, num_classes, c, opts.search_iter, init, opts.tol)
    logits = probe.logits(x_held)
    acc = float((logits.argmax(1) == target).double().mean()) * 100.0
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    se = float(ce.std() / math.sqrt(len(ce))) if len(ce) > 1 else 0.0
    return (acc, -float(ce.mean()), se), probe


def choose_c(tried: dict[float, tuple[float, float, float]], n_held: int, tie_images: int) -> float:
    """The smallest C among the ties for the best held-out top-1 (within ``tie_images`` held-out
    images of it) whose held-out mean log-likelihood is within one standard error of the best
    tie's: the most regularised fit no worse than the best beyond noise (the one-standard-error
    rule of Breiman et al.'s CART and glmnet's ``lambda.1se``). The likelihood guard keeps a
    saturated accuracy (every C at 100%) from choosing a C so small its probabilities are flat.
    ``tried``: C -> (held-out top-1 %, mean log-likelihood, its standard error).

    >>> tried = {0.1: (80.0, -0.9, 0.05), 1.0: (81.0, -0.52, 0.05), 10.0: (82.0, -0.5, 0.05)}
    >>> choose_c(tried, n_held=100, tie_images=1), choose_c(tried, n_held=100, tie_images=0)
    (1.0, 10.0)
    >>> choose_c({1e-6: (100.0, -1.09, 0.01), 1.0: (100.0, -0.2, 0.01), 1e4: (100.0, -0.001, 0.0)}, 50, 1)
    10000.0
    """
    best_acc = max(acc for acc, _, _ in tried.values())
    slack = 100.0 * tie_images / n_held + 1e-9  # in percentage points, as the accuracies are
    ties = {c: v for c, v in tried.items() if v[0] >= best_acc - slack}
    best_ll, se = max((ll, se) for _, ll, se in ties.values())
    return min(c for c, (_, ll, _) in ties.items() if ll >= best_ll - se - 1e-12)


def select_c(x: torch.Tensor, y: torch.Tensor, num_classes: int, opts: ProbeOptions) -> tuple[float, list[dict]]:
    """The C with the best held-out top-1 accuracy, a tie within ``opts.tie_images`` going to
    the smallest C its likelihood allows (:func:`choose_c`), and every C tried, in order."""
    c, search, _ = search_c(x, y, num_classes, opts)
    return c, search


def search_c(x: torch.Tensor, y: torch.Tensor, num_classes: int,
             opts: ProbeOptions) -> tuple[float, list[dict], LinearProbe | None]:
    """:func:`select_c`, plus the probe fitted on the fitted part at the chosen C (None when no
    class could be held out): its held-out scores never saw the held-out part (the one-vs-rest
    probe chooses its thresholds on them)."""
    x = x.double()  # float64 from here on: the search compares fits, not float32 rounding
    split = stratified_holdout(y.tolist(), opts.holdout, opts.seed)
    if split is None:
        return opts.default_c, [{"c": opts.default_c, "heldout_acc1": None, "note": "a class has < 2 images"}], None
    fit, held = (torch.as_tensor(s, device=x.device) for s in split)
    y = y.to(x.device)
    parts = (x[fit], y[fit], x[held], y[held])  # gathered once, not once per C
    tried: dict[float, tuple[float, float, float]] = {}
    fits: dict[float, LinearProbe] = {}

    def score(c: float) -> tuple[float, float, float]:
        if c not in tried:  # warm start from the fit of the nearest C already tried
            near = min(fits, key=lambda k: abs(math.log10(k) - math.log10(c)), default=None)
            tried[c], fits[c] = _heldout_fit(parts, num_classes, c, opts, fits.get(near))
        return tried[c]

    def best() -> float:
        return choose_c(tried, len(held), opts.tie_images)

    for c in opts.c_grid:
        score(c)
    step = 1.0
    for _ in range(opts.refine):
        centre = best()
        for c in (centre * 10 ** -step, centre * 10 ** step):
            score(float(f"{c:.6g}"))
        step /= 2
    chosen = best()
    return chosen, [{"c": c, "heldout_acc1": a, "heldout_loglik": ll, "heldout_loglik_se": se}
                    for c, (a, ll, se) in tried.items()], fits[chosen]


def fit_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int, opts: ProbeOptions = ProbeOptions()) -> LinearProbe:
    """Choose C on a held-out part of (x, y), then refit on all of it with that C, from zeros:
    the refit then takes ``LogisticRegression(C)``'s own path and stops where it stops, so the
    probe predicts as scikit-learn's does (a warm start from the held-out fit saved iterations
    but stopped elsewhere within the tolerance: 99.33% identical test predictions at 10k x 1024,
    benchmarks/RESULTS.md)."""
    if not math.isfinite(float(x.abs().max())):
        raise ValueError("features contain NaN or inf")
    x = x.double()
    c, search = select_c(x, y, num_classes, opts)
    probe = fit_logistic(x, y, num_classes, c, opts.max_iter, tol=opts.tol)
    probe.search = search
    return probe
