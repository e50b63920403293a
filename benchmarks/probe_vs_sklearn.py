"""The linear probe (harness.metrics.probe) against scikit-learn's LogisticRegression(lbfgs) on
the same features, the same held-out split and the same C values, C search included.

Features: seeded Gaussian class clusters, L2-normalised like fused embeddings (items x dim).
vlbench: ``fit_probe`` (the C search on the held-out part, then the refit on all). scikit-learn:
the same protocol by hand -- the C values vlbench's search tried, in its order, each fitted on
the same fitted part (warm-started from the previous fit, as vlbench warm-starts from the
nearest C) and scored on the same held-out part, then the refit at the C it chose. Prints both
times, their ratio (sklearn / vlbench: > 1 means vlbench is faster), the C each chose and how
often the two final probes predict the same class on held-out test items.

    .venv/bin/python benchmarks/probe_vs_sklearn.py --items 10000 --dim 1024 --classes 3 20
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def data(n: int, d: int, k: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 0.15
    y = torch.randint(0, k, (2 * n,), generator=g)
    x = torch.nn.functional.normalize(centres[y] + torch.randn(2 * n, d, generator=g) * 1.0 / d ** 0.5 * 3, dim=1)
    return x[:n], y[:n], x[n:], y[n:]


def sklearn_search(x, y, k, tried: list[float], opts):
    """scikit-learn on vlbench's protocol: the same split and C values; the best held-out accuracy."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from harness.metrics.probe import stratified_holdout

    fit, held = stratified_holdout(y.tolist(), opts.holdout, opts.seed)
    xs, ys = x.double().numpy(), y.numpy()
    clf = LogisticRegression(max_iter=opts.search_iter, warm_start=True)
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in tried:
            clf.set_params(C=c)
            clf.fit(xs[fit], ys[fit])
            loglik = clf.predict_log_proba(xs[held])[np.arange(len(held)), ys[held]].mean()
            scores[c] = (clf.score(xs[held], ys[held]), float(loglik))
        best = max(sorted(scores), key=lambda c: scores[c])
        final = LogisticRegression(C=best, max_iter=opts.max_iter).fit(xs, ys)
    return best, final


def main() -> None:
    from harness.metrics.probe import ProbeOptions, fit_probe

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--classes", type=int, nargs="+", default=[3, 20])
    args = ap.parse_args()
    opts = ProbeOptions()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.items} items x {args.dim}-d")
    for k in args.classes:
        x, y, xt, yt = data(args.items, args.dim, k)
        t = time.perf_counter()
        probe = fit_probe(x, y, k, opts)
        ours = time.perf_counter() - t
        tried = [row["c"] for row in probe.search]
        t = time.perf_counter()
        c_sk, final = sklearn_search(x, y, k, tried, opts)
        theirs = time.perf_counter() - t
        same = float((probe.logits(xt).argmax(1).numpy() == final.predict(xt.double().numpy())).mean())
        acc = float((probe.logits(xt).argmax(1) == yt).double().mean())
        print(f"classes {k:>2}: vlbench {ours:7.1f} s (C={probe.c:g}, {len(tried)} C values, test acc {100 * acc:.1f}%)"
              f" | sklearn {theirs:7.1f} s (C={c_sk:g}) | sklearn / vlbench = {theirs / ours:.2f}x"
              f" | same test predictions {100 * same:.2f}%", flush=True)


if __name__ == "__main__":
    main()
