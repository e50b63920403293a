"""The linear probe (harness.metrics.probe) against scikit-learn's LogisticRegression(lbfgs) on
the same features, the same held-out split and the same C values, C search included.

Features: seeded Gaussian class clusters that overlap (a probe reaches ~70-90% on held-out
items, so held-out accuracy really varies with C), L2-normalised like fused embeddings, float64
for both sides. Three timed runs per class count:

- vlbench: ``fit_probe`` (the C search on the seeded held-out 20%, then the refit on all);
- sklearn, same protocol: the C values vlbench's search tried, in its order, each fitted by
  ``LogisticRegression`` on the same fitted part, warm-started from the same neighbour vlbench
  started from, scored on the same held-out part; C chosen by vlbench's rule
  (:func:`choose_c`) on those scores; the refit on all (``max_iter`` 1000) from zeros;
- sklearn, its own search: ``LogisticRegressionCV`` over the same C values (ascending, its own
  warm-started path), scored on the same held-out part (``PredefinedSplit``), its own refit.

Prints each time, the ratio sklearn / vlbench (> 1: vlbench is faster), the C each chose, test
accuracy, and how often vlbench's test predictions equal each sklearn probe's; then, untimed,
``LogisticRegression(C=vlbench's C, max_iter=1000)`` from zeros and the agreement with it.

    .venv/bin/python benchmarks/probe_vs_sklearn.py --items 10000 --dim 1024 --classes 3 20
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
import warnings

import numpy as np
import torch


def separation(k: int, d: int) -> float:
    """Scale of the class centres: ~80% test accuracy for 3 and for 20 classes (measured at
    10k x 1024-d: 0.005 gives 78-80% at 3 classes, 0.01 gives 84% at 20); the distance between
    centres over the noise's per-direction spread grows as scale x d, hence the 1024 / d."""
    return 0.005 * (k / 3) ** 0.35 * 1024 / d


def data(n: int, d: int, k: int, seed: int = 0, sep: float | None = None):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * (separation(k, d) if sep is None else sep)
    y = torch.randint(0, k, (2 * n,), generator=g)
    x = torch.nn.functional.normalize(centres[y] + torch.randn(2 * n, d, generator=g) * 3.0 / d ** 0.5, dim=1)
    return x[:n].double(), y[:n], x[n:].double(), y[n:]


@contextlib.contextmanager
def _quiet():
    """scikit-learn warns when a fit reaches max_iter; so does nobody else here."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def sklearn_same_protocol(x, y, tried: list[float], opts):
    """scikit-learn on vlbench's protocol; returns (chosen C, final classifier)."""
    from sklearn.linear_model import LogisticRegression

    from harness.metrics.probe import choose_c, stratified_holdout

    fit, held = stratified_holdout(y.tolist(), opts.holdout, opts.seed)
    xs, ys = x.numpy(), y.numpy()
    scores, fits = {}, {}
    with _quiet():
        for c in tried:
            clf = LogisticRegression(C=c, max_iter=opts.search_iter, tol=opts.tol, warm_start=True)
            near = min(fits, key=lambda k: abs(math.log10(k) - math.log10(c)), default=None)
            if near is not None:  # the neighbour vlbench warm-starts from
                clf.coef_, clf.intercept_ = fits[near].coef_.copy(), fits[near].intercept_.copy()
            clf.fit(xs[fit], ys[fit])
            ll = clf.predict_log_proba(xs[held])[np.arange(len(held)), ys[held]]
            scores[c] = (100.0 * clf.score(xs[held], ys[held]), float(ll.mean()), float(ll.std(ddof=1) / math.sqrt(len(ll))))
            fits[c] = clf
        best = choose_c(scores, len(held), opts.tie_images)
        final = LogisticRegression(C=best, max_iter=opts.max_iter, tol=opts.tol).fit(xs, ys)
    return best, final


def sklearn_own_search(x, y, tried: list[float], opts):
    """LogisticRegressionCV over the same C values and the same held-out part."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import PredefinedSplit

    from harness.metrics.probe import stratified_holdout

    _, held = stratified_holdout(y.tolist(), opts.holdout, opts.seed)
    fold = np.full(len(y), -1)
    fold[held] = 0
    with _quiet():
        cv = LogisticRegressionCV(Cs=sorted(tried), cv=PredefinedSplit(fold), max_iter=opts.search_iter,
                                  tol=opts.tol, scoring="accuracy", l1_ratios=(0.0,), use_legacy_attributes=False)
        cv.fit(x.numpy(), y.numpy())
    return float(cv.C_), cv


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def main() -> None:
    from harness.metrics.probe import ProbeOptions, fit_probe

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--classes", type=int, nargs="+", default=[3, 20])
    ap.add_argument("--separation", type=float, default=None, help="class-centre scale (default: separation(k, d))")
    ap.add_argument("--no-own-search", action="store_true", help="skip the LogisticRegressionCV run")
    args = ap.parse_args()
    opts = ProbeOptions()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.items} items x {args.dim}-d; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    for k in args.classes:
        x, y, xt, yt = data(args.items, args.dim, k, sep=args.separation)
        ours, probe = timed(fit_probe, x, y, k, opts)
        pred = probe.logits(xt).argmax(1).numpy()
        tried = [row["c"] for row in probe.search]
        print(f"classes {k:>2}: vlbench {ours:7.1f} s (C={probe.c:g}, {len(tried)} C values, "
              f"test acc {100 * (pred == yt.numpy()).mean():.1f}%)", flush=True)
        runs = [("same protocol", sklearn_same_protocol)] + ([] if args.no_own_search else
                                                            [("LogisticRegressionCV", sklearn_own_search)])
        for name, fn in runs:
            theirs, (c_sk, clf) = timed(fn, x, y, tried, opts)
            same = (pred == clf.predict(xt.numpy())).mean()
            print(f"            sklearn {name}: {theirs:7.1f} s (C={c_sk:g}, test acc "
                  f"{100 * clf.score(xt.numpy(), yt.numpy()):.1f}%) | sklearn / vlbench = {theirs / ours:.2f}x"
                  f" | same test predictions {100 * same:.2f}%", flush=True)
        from sklearn.linear_model import LogisticRegression

        with _quiet():
            ref = LogisticRegression(C=probe.c, max_iter=opts.max_iter).fit(x.numpy(), y.numpy())
        print(f"            untimed LogisticRegression(C={probe.c:g}) from zeros: same test predictions "
              f"{100 * (pred == ref.predict(xt.numpy())).mean():.2f}%; load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
