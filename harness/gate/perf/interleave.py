"""Interleaved timing: harness and bare reference alternate, the ratio is taken per pair.

On a shared machine the load drifts over seconds; two runs next to each other meet about
the same load, so the ratio of a pair is steadier than either time. The order inside a
pair alternates (h b, b h, h b, ...) so neither side always runs on a warmer cache, and
the median of the pairs' ratios drops the pairs a burst of load fell on unevenly.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.core.errors import OptionError


@dataclass(frozen=True)
class Measurement:
    """``ratio`` = median over pairs of bare seconds / harness seconds: 1.0 is as fast as
    the bare reference, 0.5 half as fast; higher is better."""

    name: str
    ratio: float
    ratios: list[float]
    harness_s: float            # median seconds of one harness run
    bare_s: float               # median seconds of one bare run
    items: int                  # items per run (images, texts, queries, pairs, processes)
    params: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # bench-specific figures (e.g. a record's stage times)

    def to_dict(self) -> dict:
        return {"name": self.name, "ratio": self.ratio, "ratios": self.ratios, "harness_s": self.harness_s,
                "bare_s": self.bare_s, "items": self.items, "params": self.params, "extra": self.extra}


def interleaved(name: str, harness: Callable[[], object], bare: Callable[[], object], repeats: int,
                items: int, warmup: int = 1, params: dict | None = None,
                clock: Callable[[], float] = time.perf_counter) -> Measurement:
    """Time ``harness`` and ``bare`` in ``repeats`` alternating pairs after ``warmup``
    untimed rounds of each (lazy init, allocator growth and page cache charged to neither).

    >>> m = interleaved("noop", lambda: None, lambda: None, repeats=3, items=1)
    >>> len(m.ratios), m.ratio > 0
    (3, True)
    """
    from harness.core.memo import clear_all

    if repeats < 1:
        raise OptionError(f"{name}: repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        harness()
        bare()
    hs, bs, ratios = [], [], []
    for r in range(repeats):
        pair = {}
        for side in (("h", "b") if r % 2 == 0 else ("b", "h")):
            fn = harness if side == "h" else bare
            clear_all()  # each side does the whole work: no tower features memoised by the other
            t0 = clock()
            fn()
            pair[side] = clock() - t0
        hs.append(pair["h"])
        bs.append(pair["b"])
        ratios.append(pair["b"] / pair["h"] if pair["h"] > 0 else float("inf"))
    return Measurement(name, statistics.median(ratios), ratios, statistics.median(hs), statistics.median(bs),
                       items, dict(params or {}))
