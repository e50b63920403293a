"""Records against published reference values: reproduced, not reproduced, or a protocol
that differs (named, not compared).

A record has a counterpart when its model is one the reference names (same weights), and its
dataset, split and task are the reference's. Before any number is compared, every protocol
point the reference fixes (``references.PROTOCOL_KEYS``) is read from the record; where the
record states something else (a ``--limit`` subset, bf16, GELU where the weights want
QuickGELU, one template instead of 80, no "A photo depicts" prefix) the difference is named and
the numbers are left alone: a miss there says nothing about the setup, a hit would be luck.
A point the record does not state (an imported CLIP_benchmark result has no precision) is
listed as unstated and the numbers are compared.

    >>> from harness.results.records import ResultRecord
    >>> ref = Reference("r", ("m",), "d", "test", "retrieval", {"t2i_R@1": 50.0}, 0.5, "why",
    ...                 {"kind": "paper"}, "read", {"precision": ["fp32"]})
    >>> rec = ResultRecord({"name": "m"}, {"name": "d", "split": "test"}, "retrieval",
    ...                    {"precision": "fp32", "limit": None}, {"t2i_R@1": 50.3}, "t2i_R@1", {}, {}, {},
    ...                    "2026-01-01", 0.0, "k")
    >>> v = verdict(rec, ref); v.status, [(c.metric, round(c.delta, 2), c.ok) for c in v.comparisons]
    ('reproduced', [('t2i_R@1', 0.3, True)])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.results.records import ResultRecord
from harness.verify.references import Reference

REPRODUCED, MISSED, PROTOCOL = "reproduced", "not reproduced", "protocol differs"
_EPS = 1e-9  # float slack on the interval's ends


@dataclass(frozen=True)
class Comparison:
    metric: str
    published: float
    current: float | None  # None: the record lacks the metric (not compared)
    tolerance: float

    @property
    def delta(self) -> float | None:
        return None if self.current is None else self.current - self.published

    @property
    def interval(self) -> tuple[float, float]:
        return self.published - self.tolerance, self.published + self.tolerance

    @property
    def ok(self) -> bool | None:
        if self.current is None or not math.isfinite(self.current):
            return None
        return abs(self.current - self.published) <= self.tolerance + _EPS


@dataclass(frozen=True)
class Verdict:
    record: ResultRecord
    reference: Reference
    status: str                                 # REPRODUCED | MISSED | PROTOCOL
    differences: list[str] = field(default_factory=list)  # protocol points that differ (PROTOCOL)
    unstated: list[str] = field(default_factory=list)     # protocol points the record does not state
    comparisons: list[Comparison] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the leaderboard's tooltip."""
        if self.status == PROTOCOL:
            return f"not compared with {self.reference.id}: {'; '.join(self.differences)}"
        worst = max((abs(c.delta) for c in self.comparisons if c.ok is not None), default=0.0)
        return (f"{self.status}: {self.reference.id} ({self.reference.cite()}), largest difference "
                f"{worst:.2f} within +-{self.reference.tolerance:g}" if self.status == REPRODUCED else
                f"{self.status}: {self.reference.id}, largest difference {worst:.2f} > +-{self.reference.tolerance:g}")


def canonical_model(name: str | None) -> str:
    """``open_clip:ARCH/TAG`` and ``ARCH/TAG`` name the same weights.

    >>> canonical_model("open_clip:ViT-B-32/openai")
    'ViT-B-32/openai'
    """
    name = str(name or "")
    return name.removeprefix("open_clip:")


def counterpart(rec: ResultRecord, references: list[Reference]) -> Reference | None:
    model = canonical_model(rec.model.get("name"))
    for ref in references:
        if (model in ref.models and rec.dataset.get("name") == ref.dataset
                and rec.dataset.get("split") == ref.split and rec.task == ref.task):
            return ref
    return None


def imported(rec: ResultRecord) -> str | None:
    return (rec.environment or {}).get("imported_from")


def _stated(rec: ResultRecord, key: str):
    """What the record says about one protocol point; None when it does not say."""
    opts = rec.options or {}
    if key == "precision":
        return opts.get("precision")
    if key == "activation":
        return (rec.model or {}).get("activation")
    if key == "scorer":
        return opts.get("scorer")
    if key == "kendall":
        return opts.get("kendall_variant")
    if key == "text_prompt":  # vlbench's own runs put nothing before a caption unless they record it
        return opts.get("text_prompt", None if imported(rec) else "")
    raise KeyError(key)


def protocol_differences(rec: ResultRecord, ref: Reference) -> tuple[list[str], list[str]]:
    """(differences, unstated points) between what the record did and the reference's protocol."""
    diffs, unstated = [], []
    proto, opts, data = ref.protocol, rec.options or {}, rec.dataset or {}
    if opts.get("weights"):
        diffs.append(f"weights from --weights {opts['weights']} (the published checkpoint cannot be told)")
    if proto.get("full_split"):
        if opts.get("limit") is not None:
            diffs.append(f"a --limit {opts['limit']} subset, the reference used the whole split")
        dropped = _dropped(data.get("info"))
        if dropped:
            diffs.append(f"{dropped} item(s) of the split were dropped ({', '.join(sorted(dropped_kinds(data.get('info'))))})")
    for what, want in (proto.get("counts") or {}).items():
        have = data.get(what)
        if have is None:
            unstated.append(what)
        elif have != want:
            diffs.append(f"{what}: {have}, the reference had {want}")
    for key in ("precision", "activation", "scorer", "kendall", "text_prompt"):
        if key not in proto:
            continue
        want, have = proto[key], _stated(rec, key)
        allowed = want if isinstance(want, list) else [want]
        if have is None:
            unstated.append(key)
        elif have not in allowed:
            hint = f" (--model-option activation={allowed[0]} builds it)" if key == "activation" else ""
            diffs.append(f"{key}: {_show(have)}, the reference used {' or '.join(map(_show, allowed))}{hint}")
    return diffs, unstated


def dropped_kinds(info) -> dict[str, int]:
    """The loaders' ``dropped_*`` counts that are not zero (missing images, bad entries...)."""
    if not isinstance(info, dict):
        return {}
    return {k: v for k, v in info.items() if k.startswith("dropped_") and isinstance(v, int) and v > 0}


def _dropped(info) -> int:
    return sum(dropped_kinds(info).values())


def _show(value) -> str:
    return repr(value) if isinstance(value, str) and (not value or " " in value) else str(value)


def verdict(rec: ResultRecord, ref: Reference) -> Verdict:
    diffs, unstated = protocol_differences(rec, ref)
    if diffs:
        return Verdict(rec, ref, PROTOCOL, diffs, unstated)
    comps = [Comparison(m, v, _number(rec.metrics.get(m)), ref.tolerance) for m, v in ref.metrics.items()]
    compared = [c for c in comps if c.ok is not None]
    if not compared:
        return Verdict(rec, ref, PROTOCOL, [f"the record has none of {', '.join(ref.metrics)}"], unstated, comps)
    status = REPRODUCED if all(c.ok for c in compared) else MISSED
    return Verdict(rec, ref, status, [], unstated, comps)


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def verdicts(records: list[ResultRecord], references: list[Reference]) -> tuple[list[Verdict], list[ResultRecord]]:
    """(a verdict per record that has a counterpart, the records that have none)."""
    found, alone = [], []
    for rec in records:
        ref = counterpart(rec, references)
        if ref is None:
            alone.append(rec)
        else:
            found.append(verdict(rec, ref))
    return found, alone


def record_verdict(rec: ResultRecord) -> Verdict | None:
    """The verdict for one record against the shipped table (None: no counterpart); the
    leaderboard marks rows with it."""
    from harness.verify.references import cached_table

    ref = counterpart(rec, cached_table())
    return None if ref is None else verdict(rec, ref)
