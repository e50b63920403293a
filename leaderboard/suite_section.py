"""The page's suite-score sections: one per suite whose ``aggregate`` applies to the records
(``harness.run.aggregate`` for the arithmetic, ``leaderboard.aggregate`` for the intervals).

A row is a model (with its precision, device and reranking setup): its mean over every task
of the suite with a 95% interval, its group means, its mean per task type, its Borda rank and
how many tasks it has. A model without every task shows no mean and no rank, and the row
names the tasks it lacks."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from harness.run.aggregate import Aggregate, suite_aggregate

from .aggregate import SystemScore, applies, suite_scores
from .uncertainty import QueryCache, UncertaintyOptions

MISSING = "-"


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page_aggregates(df: pd.DataFrame, suites: tuple[str, ...] | None) -> list[Aggregate]:
    """The aggregates the page shows: the named suites' (names or YAML paths; each must declare
    one), or with ``None`` every known suite's (``vlbench list suites``) that applies to a run."""
    from harness.run.aggregate import AggregateError
    from harness.run.suites import get_suite
    from harness.run.suites import suites as known

    if suites is None:
        found = [suite_aggregate(get_suite(name)) for name in known().names()]
        return [a for a in found if a is not None and applies(df, a)]
    out = []
    for name in suites:
        suite = get_suite(str(name))
        agg = suite_aggregate(suite)
        if agg is None:
            raise AggregateError(f"suite {suite.name} ({suite.path}) declares no aggregate; add an "
                                 f"'aggregate:' block to show its suite score")
        out.append(agg)
    return out


def _num(value: float | None, ci: tuple[float, float] | None, best: bool = False, title: str = "") -> str:
    if value is None:
        return f'<td class="num" data-sort="">{MISSING}</td>'
    extra = f'<span class="ci">{ci[0]:.2f}\u2013{ci[1]:.2f}</span>' if ci else ""
    tip = title or (f"95% bootstrap interval [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "no interval")
    return (f'<td class="num{" best" if best else ""}" data-sort="{float(value)!r}" title="{_esc(tip)}">'
            f"{value:.2f}{extra}</td>")


def _columns(agg: Aggregate) -> list[tuple[str, str, str]]:
    """(key in Score, header, tooltip) per numeric column."""
    cols = [("mean", f"mean ({len(agg.tasks)} tasks)", "mean of every task's number (DataComp-style)")]
    cols += [(f"group:{g}", g, f"mean over {', '.join(t.key for t in ts)}") for g, ts in agg.groups]
    if len(agg.types) > 1 or agg.groups:
        cols += [(f"type:{k}", f"{k} (type)", f"mean over the {len(ts)} {k} task(s) (MTEB-style)")
                 for k, ts in agg.types]
    return cols


def _value(row: SystemScore, key: str) -> float | None:
    kind, _, name = key.partition(":")
    return row.score.mean if kind == "mean" else (row.score.groups if kind == "group" else row.score.types).get(name)


def _row(row: SystemScore, agg: Aggregate, cols, best: dict[str, float | None]) -> str:
    s = row.system
    cells = [f'<td class="model">{_esc(row.label)}</td>', f'<td class="prov">{_esc(s.precision)}</td>',
             f'<td class="prov">{_esc(s.device)}</td>']
    for key, _, _ in cols:
        value = _value(row, key)
        ci = row.intervals.get(key)
        if value is None and key == "mean" and not row.score.complete:  # marked, never a mean over fewer
            lacks = "; ".join(f"{k} ({why})" for k, why in row.score.missing.items())
            cells.append(f'<td class="num incomplete" data-sort="" title="missing {_esc(lacks)}">incomplete</td>')
            continue
        why = "" if ci or value is None else "no interval: " + "; ".join(f"{k}: {v}" for k, v in row.no_interval.items())
        cells.append(_num(value, ci, value is not None and value == best.get(key), why))
    rank = f'<td class="num" data-sort="{row.borda[1]}" title="{row.borda[0]:g} Borda points">{row.borda[1]}</td>' \
        if row.borda else f'<td class="num" data-sort="">{MISSING}</td>'
    have = len(agg.tasks) - len(row.score.missing)
    if row.score.complete:
        status = f'<td class="prov">{have}/{len(agg.tasks)}</td>'
    else:
        lacks = "; ".join(f"{k} ({why})" for k, why in row.score.missing.items())
        status = (f'<td class="prov incomplete" title="{_esc(lacks)}">{have}/{len(agg.tasks)}: '
                  f"missing {_esc(', '.join(row.score.missing))}</td>")
    cls = "" if row.score.complete else ' class="incomplete"'
    return f'<tr{cls} data-model="{_esc(row.label)}">{"".join(cells)}{rank}{status}</tr>'


def section(df: pd.DataFrame, agg: Aggregate, opts: UncertaintyOptions, cache: QueryCache) -> str:
    rows = suite_scores(df, agg, opts, cache)
    if not rows:
        return ""
    cols = _columns(agg)
    best = {}
    for key, _, _ in cols:
        values = [v for v in (_value(r, key) for r in rows) if v is not None]
        best[key] = max(values) if len(values) >= 2 else None
    head = "".join(f'<th scope="col" class="num" title="{_esc(tip)}">{_esc(h)}</th>' for _, h, tip in cols)
    body = "\n".join(_row(r, agg, cols, best) for r in rows)
    metrics = sorted({f"{t.key}: {m}" for r in rows for t, m in r.metrics.items()})
    incomplete = sum(not r.score.complete for r in rows)
    level = round(100 * (1 - opts.alpha))
    meta = (f"Mean of each task's main metric over the suite's {len(agg.tasks)} tasks (DataComp-style; retrieval "
            f"enters as the mean of text and image R@1), group means, the mean per task type (MTEB-style) and "
            f"the Borda rank over the models with every task. {level}% intervals: bootstrap over the items of each "
            f"task, resampled per task and averaged ({opts.n_boot} resamples, seed {opts.seed}).")
    note = (f'<p class="note warn">{incomplete} model(s) lack tasks of this suite: no mean or rank is shown for '
            f"them (never a mean over fewer tasks); the last column names what is missing.</p>\n" if incomplete else "")
    return (f'<section class="aggregate" data-suite="{_esc(agg.name)}">\n<h2>suite score: {_esc(agg.name)}</h2>\n'
            f'<p class="meta">{_esc(meta)}</p>\n{note}'
            f'<div class="scroll"><table class="sortable">\n<thead><tr><th scope="col">model</th>'
            f'<th scope="col">precision</th><th scope="col">device</th>{head}'
            f'<th scope="col" class="num" title="Borda rank (MMTEB): per task one point per model beaten">Borda</th>'
            f'<th scope="col">tasks</th></tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>\n'
            f'<p class="note">Tasks and the metric each enters with: {_esc("; ".join(metrics))}.</p>\n</section>')


def sections(df: pd.DataFrame, suites: tuple[str, ...] | None, opts: UncertaintyOptions, cache: QueryCache) -> str:
    if df.empty:
        return ""
    return "\n".join(s for s in (section(df, agg, opts, cache) for agg in page_aggregates(df, suites)) if s)


__all__ = ["page_aggregates", "section", "sections"]
