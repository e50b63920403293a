"""Agreement between a model's image-text scores and human judgments: Kendall's tau.

Pure numpy (the leaderboard bootstraps these without torch). ``tau_b`` and ``tau_c`` follow
``scipy.stats.kendalltau(variant='b'/'c')`` exactly, ties included: with ``S`` = concordant
minus discordant pairs, ``n0 = n(n-1)/2``, ``n1``/``n2`` the pairs tied in x / in y,

    tau_b = S / sqrt((n0 - n1)(n0 - n2))        tau_c = 2 S / (n^2 (m - 1) / m),  m = min(#x values, #y values)

CLIPScore (Hessel et al. 2021) reports tau_c on Flickr8k-Expert and tau_b on Flickr8k-CF.

The functions take optional per-row multiplicities ``weights`` (whole numbers): a row of
weight w counts as w copies of itself, so a bootstrap resample of query images is the same
rows with each row weighted by how often its image was drawn (:func:`grouped_tau_ci`). That
lets one pass of cumulative histograms score a block of resamples at once instead of
re-sorting every resample.

    >>> x, y = [1, 2, 3, 4, 5], [1, 3, 2, 4, 4]
    >>> round(kendall_tau(x, y, "b"), 4), round(kendall_tau(x, y, "c"), 4)
    (0.7379, 0.7467)
"""

from __future__ import annotations

import numpy as np

__all__ = ["kendall_tau", "kendall_tau_weighted", "grouped_tau_ci", "tau_undefined_reason", "VARIANTS"]

VARIANTS = ("b", "c")
BLOCK_ELEMENTS = 2**22  # resamples x distinct scores held at once by the weighted pass


def _check(x, y, variant: str) -> tuple[np.ndarray, np.ndarray]:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of one length, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("scores contain NaN or inf")
    return x, y


def kendall_tau(x, y, variant: str = "b") -> float:
    """Kendall's tau-b or tau-c of paired scores (NaN when undefined: fewer than 2 rows, or
    one side constant).

    >>> kendall_tau([1, 2, 3], [1, 2, 3]), kendall_tau([1, 2, 3], [3, 2, 1], "c")
    (1.0, -1.0)
    >>> round(kendall_tau([1, 1, 2, 3], [1, 2, 2, 2], "b"), 4)  # ties on both sides
    0.5164
    """
    x, y = _check(x, y, variant)
    return float(kendall_tau_weighted(x, y, np.ones((1, x.size)), variant)[0])


def tau_undefined_reason(model, human) -> str | None:
    """Why Kendall's tau of ``model`` against ``human`` scores has no value, or None when it
    has one: it divides by the pairs untied on each side, none when a side is constant.

    >>> tau_undefined_reason([0.1, 0.2], [3, 3])
    "all 2 human judgments are equal (3): Kendall's tau is undefined"
    >>> tau_undefined_reason([0.5, 0.5, 0.5], [1, 2, 3])
    "all 3 model scores are equal (0.5): Kendall's tau is undefined"
    >>> tau_undefined_reason([0.1, 0.2], [1, 2]) is None
    True
    """
    model, human = np.asarray(model, dtype=np.float64), np.asarray(human, dtype=np.float64)
    if model.size < 2:
        return f"{model.size} judgment row(s): Kendall's tau needs at least 2"
    for what, v in (("human judgments", human), ("model scores", model)):
        if (v == v[0]).all():
            return f"all {v.size} {what} are equal ({v[0]:g}): Kendall's tau is undefined"
    return None


def _dense_rank(v: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, inv = np.unique(v, return_inverse=True)
    return inv.reshape(-1), uniq.size


def kendall_tau_weighted(x, y, weights, variant: str = "b") -> np.ndarray:
    """Tau of ``x``/``y`` for each row of ``weights`` (B, n): row b counts observation i
    ``weights[b, i]`` times (0: left out). Returns (B,) values, NaN where undefined.

    >>> w = np.array([[1, 1, 1, 1], [2, 0, 1, 1]])
    >>> kendall_tau_weighted([1, 2, 3, 4], [1, 2, 4, 3], w, "b").round(4).tolist()
    [0.6667, 0.6]
    """
    x, y = _check(x, y, variant)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != x.size:
        raise ValueError(f"weights must be (B, {x.size}), got {w.shape}")
    if x.size == 0:
        return np.full(w.shape[0], np.nan)
    rx, ux = _dense_rank(x)
    ry, uy = _dense_rank(y)
    block = max(1, BLOCK_ELEMENTS // max(ux, uy, 1))
    return np.concatenate([_tau_block(rx, ux, ry, uy, w[s:s + block], variant)
                           for s in range(0, w.shape[0], block)])


def _histogram(rank: np.ndarray, n_values: int, w: np.ndarray) -> np.ndarray:
    """(B, n_values): per resample, the weight of the rows at each rank (bincount, not the
    slow ``np.add.at``)."""
    flat = (np.arange(w.shape[0])[:, None] * n_values + rank[None, :]).ravel()
    hist = np.bincount(flat, weights=w.ravel(), minlength=w.shape[0] * n_values)
    return hist.reshape(w.shape[0], n_values)


def _tied_pairs(rank: np.ndarray, n_values: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per resample: pairs tied on this side (sum of c(c-1)/2 over values) and distinct values."""
    counts = _histogram(rank, n_values, w)
    return (counts * (counts - 1) / 2).sum(1), (counts > 0).sum(1)


def _tau_block(rx, ux, ry, uy, w, variant):
    """S by levels of y, lowest first: a row of level L is concordant with every earlier
    (lower-y) row of lower x and discordant with every earlier row of higher x; the earlier
    rows are kept as a histogram over x ranks per resample."""
    order = np.argsort(ry, kind="stable")
    levels = np.split(order, np.flatnonzero(np.diff(ry[order])) + 1)
    # float32 holds whole counts exactly up to 2**24 rows; S itself is summed in float64
    seen = np.zeros((w.shape[0], ux), dtype=np.float32)
    s = np.zeros(w.shape[0])
    for rows in levels:
        r, wl = rx[rows], w[:, rows]
        if s.any() or seen.any():
            upto = np.cumsum(seen, axis=1)[:, r]        # earlier rows with x <= this row's
            below = upto - seen[:, r]                    # ... strictly below
            above = seen.sum(1, keepdims=True) - upto    # ... strictly above
            s += (wl * (below - above)).sum(1, dtype=np.float64)
        seen += _histogram(r, ux, wl).astype(np.float32)
    n = w.sum(1)
    n0 = n * (n - 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        if variant == "b":
            n1, _ = _tied_pairs(rx, ux, w)
            n2, _ = _tied_pairs(ry, uy, w)
            tau = s / np.sqrt((n0 - n1) * (n0 - n2))
        else:
            _, mx = _tied_pairs(rx, ux, w)
            _, my = _tied_pairs(ry, uy, w)
            m = np.minimum(mx, my).astype(np.float64)
            tau = 2 * s / (n ** 2 * (m - 1) / m)
    return np.where(np.isfinite(tau), tau, np.nan)


def grouped_tau_ci(model_scores, human_scores, groups, variant: str, n_boot: int = 1000, seed: int = 0,
                   alpha: float = 0.05, scale: float = 100.0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``scale * tau`` resampling whole groups (query images:
    the judgments of one image are not independent of each other), with replacement.

    >>> s = np.arange(40.0); g = np.arange(40) // 2   # 20 images, 2 judgments each
    >>> grouped_tau_ci(s, s ** 2, g, "b", n_boot=200)  # same order: tau = 1 in every resample
    (100.0, 100.0)
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    taus = grouped_tau_replicates(model_scores, human_scores, groups, variant, n_boot, seed, scale)
    taus = taus[np.isfinite(taus)]
    if taus.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(taus, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def grouped_tau_replicates(model_scores, human_scores, groups, variant: str, n_boot: int = 1000, seed: int = 0,
                           scale: float = 100.0) -> np.ndarray:
    """The ``(n_boot,)`` bootstrap values of ``scale * tau`` behind :func:`grouped_tau_ci`
    (NaN where a resample leaves tau undefined)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    g = g.reshape(-1)
    n_groups = int(g.max()) + 1 if g.size else 0
    if n_groups == 0:
        raise ValueError("no judgments to resample")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    counts = np.zeros((n_boot, n_groups))
    np.add.at(counts, (np.arange(n_boot)[:, None], draws), 1.0)
    return scale * kendall_tau_weighted(model_scores, human_scores, counts[:, g], variant)
