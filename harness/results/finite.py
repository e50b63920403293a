"""No record holds NaN or Infinity: an undefined metric is ``null`` with a reason beside it,
and an undefined MAIN metric fails the run in one line saying why (a number nobody can rank
is not a result). Strict JSON parsers (JavaScript's, Go's, jq's) reject bare ``NaN``."""

from __future__ import annotations

import math
from typing import Any

from harness.core.errors import UserError

UNDEFINED_KEY = "undefined_metrics"  # record.options[...]: {metric: why it has no value}


class UndefinedMetric(UserError):
    """The main metric of a run has no value (e.g. Kendall's tau with every judgment equal)."""


def non_finite_fields(value: Any, at: str = "") -> list[str]:
    """Dotted paths of every NaN / Infinity inside nested dicts and lists.

    >>> non_finite_fields({"metrics": {"acc": float("nan"), "n": 3}, "xs": [1.0, float("inf")]})
    ['metrics.acc', 'xs[1]']
    """
    if isinstance(value, float):
        return [] if math.isfinite(value) else [at or "value"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in non_finite_fields(v, f"{at}.{k}" if at else str(k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in non_finite_fields(v, f"{at}[{i}]")]
    return []


def settle(metrics: dict[str, float], main: str, reasons: dict[str, str], where: str) -> tuple[dict, dict]:
    """``(metrics with each non-finite value as None, {metric: reason})``; an UndefinedMetric
    naming ``where`` and the reason when the main metric is one of them.

    >>> settle({"acc": 50.0, "acc_b": float("nan")}, "acc", {"acc_b": "no items"}, "aro/test")
    ({'acc': 50.0, 'acc_b': None}, {'acc_b': 'no items'})
    >>> settle({"tau": float("nan")}, "tau", {}, "x/test")
    Traceback (most recent call last):
    ...
    harness.results.finite.UndefinedMetric: x/test: tau is undefined (not a finite number); no result is recorded
    """
    undefined = {k: reasons.get(k) or "undefined (not a finite number)"
                 for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
    if main in undefined:
        raise UndefinedMetric(f"{where}: {reasons.get(main) or f'{main} is undefined (not a finite number)'}; "
                              "no result is recorded")
    return {k: (None if k in undefined else v) for k, v in metrics.items()}, undefined
