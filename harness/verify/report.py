"""``vlbench verify``'s text: per record with a published counterpart, every metric with the
published value, this setup's, the difference and the interval, then one summary line."""

from __future__ import annotations

from collections import Counter

from harness.verify.compare import MISSED, PROTOCOL, REPRODUCED, Verdict, imported


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def _title(v: Verdict) -> str:
    r = v.record
    src = f" [imported from {imported(r)}]" if imported(r) else ""
    return (f"{r.model.get('name')} on {r.dataset.get('name')}/{r.dataset.get('split')} ({r.task}){src}"
            f" vs {v.reference.id}: {v.status.upper()}")


def format_verdict(v: Verdict) -> list[str]:
    lines = [_title(v), f"  source: {v.reference.cite()}"]
    if not v.reference.rechecked:
        lines.append("  note: this reference value was not re-read against its source (see references.yaml)")
    if v.status == PROTOCOL:
        lines += [f"  protocol differs: {d}" for d in v.differences]
        lines.append("  (not compared: a different protocol gives different numbers)")
    else:
        header = ["metric", "published", "this setup", "difference", "interval", "verdict"]
        rows = [[c.metric, _num(c.published), _num(c.current), _num(c.delta, "+.2f"),
                 f"[{c.interval[0]:.2f}, {c.interval[1]:.2f}]",
                 {True: "reproduced", False: "NOT reproduced", None: "not in the record"}[c.ok]]
                for c in v.comparisons]
        widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
        fmt = "  " + "  ".join(f"{{:<{w}}}" for w in widths)
        lines += [fmt.format(*header).rstrip(), *(fmt.format(*row).rstrip() for row in rows)]
    if v.unstated:
        lines.append(f"  not stated by the record (assumed as the reference): {', '.join(v.unstated)}")
    return lines


def format_report(found: list[Verdict], alone: list) -> str:
    lines: list[str] = []
    for v in sorted(found, key=lambda v: (v.reference.id, str(v.record.model.get("name")))):
        lines += [*format_verdict(v), ""]
    n = Counter(v.status for v in found)
    if not found:
        lines.append("verify: no record has a published counterpart (see harness/verify/references.yaml "
                     "for the models, datasets and splits it covers)")
    lines.append(f"verify: {n[REPRODUCED]} reproduced, {n[MISSED]} not reproduced, {n[PROTOCOL]} with a "
                 f"different protocol (not compared), {len(alone)} record(s) with no published counterpart")
    return "\n".join(lines)
