"""One-vs-rest linear probes for multi-label data (MM-IMDb's genres): one binary L-BFGS logistic
regression per label (:mod:`harness.metrics.probe`), its C chosen on a seeded held-out part of
train (:func:`harness.metrics.probe.search_c`), its decision threshold chosen there too
(:func:`harness.metrics.multimodal_cls.best_threshold`, on the held-out scores of the search's
fit at that C, which never saw them), then refitted on all of train from zeros. scikit-learn's
``OneVsRestClassifier(LogisticRegression(C))`` at the same C's gives the same probabilities
(each label's problem is the binary one :mod:`probe` matches).

    >>> import torch
    >>> x = torch.tensor([[0., 0.], [0., 1.], [1., 0.], [1., 1.]] * 3)
    >>> y = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]] * 3)
    >>> ovr = fit_ovr(x, y, ProbeOptions(c_grid=(1e2,), refine=0))
    >>> ovr.predict(x)[:4].tolist()
    [[False, False], [False, True], [True, False], [True, True]]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from harness.metrics.multimodal_cls import best_threshold
from harness.metrics.probe import LinearProbe, ProbeOptions, fit_logistic, search_c, stratified_holdout

__all__ = ["OneVsRest", "fit_ovr", "ProbeOptions"]


@dataclass
class OneVsRest:
    probes: list[LinearProbe]
    thresholds: list[float]
    search: list[list[dict]] = field(default_factory=list)

    @property
    def c(self) -> list[float]:
        return [p.c for p in self.probes]

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L) probability of each label."""
        return torch.stack([p.logits(x).softmax(-1)[:, 1] for p in self.probes], dim=1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L) bool: label probability at or above its threshold."""
        return self.probabilities(x) >= torch.as_tensor(self.thresholds, dtype=torch.float64, device=x.device)


def fit_ovr(x: torch.Tensor, y: torch.Tensor, opts: ProbeOptions = ProbeOptions()) -> OneVsRest:
    """``y``: (N, L) 0/1 indicators. Per label: C and threshold on held-out train, refit on all."""
    probes, thresholds, searches = [], [], []
    for label in range(y.shape[1]):
        target = y[:, label].long().to(x.device)
        c, search, part = search_c(x, target, 2, opts)
        split = stratified_holdout(target.tolist(), opts.holdout, opts.seed)
        threshold = 0.5
        if split is not None and part is not None and 0 < int(target.sum()) < len(target):
            held = torch.as_tensor(split[1], device=x.device)
            held_scores = part.logits(x[held]).softmax(-1)[:, 1]
            threshold = best_threshold(held_scores.cpu().numpy(), target[held].cpu().numpy())
        probe = fit_logistic(x, target, 2, c, opts.max_iter, tol=opts.tol)
        probes.append(probe)
        thresholds.append(threshold)
        searches.append(search)
    return OneVsRest(probes, thresholds, searches)
