"""The leaderboard page: frame (+ history) -> one self-contained HTML string.

Everything that came from a record is escaped (``esc``); CSS and JS are read from
``leaderboard/assets`` and inlined; plots are PNG data URIs. Nothing is fetched.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pandas as pd

from . import agreement, captioning, mm_classification, perf, suite_section
from .columns import Col, page_columns
from .frame import not_measured
from .tables import group_title, main_metrics
from .uncertainty import GROUP, QueryCache, UncertaintyOptions, annotate, unusable_notes

DEFAULT_TITLE = "vlbench leaderboard"
MISSING = "-"


@dataclass(frozen=True)
class PageOptions:
    title: str = DEFAULT_TITLE
    plots: bool = True
    uncertainty: UncertaintyOptions = field(default_factory=UncertaintyOptions)
    perf_check: dict | None = None  # the latest throughput-ratio check (leaderboard.perf.read)
    suites: tuple[str, ...] | None = ()  # suite scores shown (names/paths); None: every suite that applies


def esc(value: Any) -> str:
    """Escape anything that came from a record (model names, datasets, versions...)."""
    return html.escape("" if value is None else str(value), quote=True)


def asset(name: str) -> str:
    return (resources.files("leaderboard") / "assets" / name).read_text(encoding="utf-8")


def render_page(df: pd.DataFrame, history: pd.DataFrame | None = None,
                options: PageOptions = PageOptions()) -> str:
    """The page for the latest rows ``df``; ``history`` (every record) feeds the trend plots."""
    cache = QueryCache()
    rows = annotate(df, options.uncertainty, cache) if not df.empty else df
    groups = _groups(rows)
    body = [f"<h1>{esc(options.title)}</h1>", f'<p class="meta">{esc(_summary(df, len(groups)))}</p>']
    if not groups:
        body.append('<p class="empty">No results yet. Run <code>vlbench run ...</code> and rebuild.</p>')
    else:
        body += [_filters(df), _legend(options.uncertainty), _overview(df, groups),
                 suite_section.sections(df, options.suites, options.uncertainty, cache), agreement.section(rows)]
    for key, sub in groups:
        past = None if history is None else _select(history, key)
        body.append(_section(key, sub, past, cache, options))
    body.append(mm_classification.section(df))  # image + text -> label: fused vs each modality
    body.append(perf.section(options.perf_check))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(options.title)}</title>\n<style>\n{asset('page.css')}\n</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>\n{asset('page.js')}\n</script>\n</body>\n</html>\n"
    )


def _key_part(value: Any) -> str:
    return "?" if value is None or pd.isna(value) else str(value)


def _key(row: pd.Series) -> tuple[str, str, str]:
    return tuple(_key_part(row[c]) for c in GROUP)  # type: ignore[return-value]


def _select(df: pd.DataFrame, key: tuple[str, str, str]) -> pd.DataFrame:
    return df[[_key(r) == key for _, r in df.iterrows()]]


def _groups(df: pd.DataFrame) -> list[tuple[tuple[str, str, str], pd.DataFrame]]:
    if df.empty:
        return []
    keys = sorted({_key(r) for _, r in df.iterrows()})
    out = []
    for key in keys:
        sub = _select(df, key)
        sub = sub.assign(_v=sub["main_value"].fillna(-math.inf))
        out.append((key, sub.sort_values(["_v", "label"], ascending=[False, True], kind="stable")))
    return out


def _summary(df: pd.DataFrame, n_tables: int) -> str:
    if df.empty:
        return "0 runs"
    latest = df["created_at"].max()
    when = "" if pd.isna(latest) else f" \u00b7 latest run {latest:%Y-%m-%d %H:%M} UTC"
    return f"{len(df)} runs \u00b7 {n_tables} tables{when}"


def _options(name: str, label: str, values) -> str:
    opts = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in sorted({str(v) for v in values}))
    return (f'<label for="filter-{name}">{esc(label)}</label> '
            f'<select id="filter-{name}"><option value="">all</option>{opts}</select>')


def _filters(df: pd.DataFrame) -> str:
    return ('<div class="filters">'
            + _options("task", "task", df["task"].dropna())
            + _options("dataset", "dataset", df["dataset"].dropna())
            + _options("family", "model family", df["family"].dropna())
            + '<label for="filter-model">model</label> '
              '<input id="filter-model" type="search" placeholder="name contains\u2026">'
            + "</div>")


def _legend(opts: UncertaintyOptions) -> str:
    level = round(100 * (1 - opts.alpha))
    return (f'<p class="legend"><span>\u2605 best in column</span>'
            f'<span>small grey numbers: {level}% bootstrap interval over queries (hard negatives: '
            f'over groups of comparisons that share an image), '
            f'{opts.n_boot} resamples, seed {opts.seed}</span>'
            f'<span><span class="ns">\u2248</span> lead over the next row not significant '
            f'(paired bootstrap, p \u2265 {opts.alpha:g})</span>'
            f'<span>\u2020 speed measured by the latest run of the same setup that encoded; '
            f'"cached": served from the embedding cache, no speed measured</span>'
            f'<span>click a header to sort</span></p>')


def _overview(df: pd.DataFrame, groups) -> str:
    """Models x tables on each table's main metric (``models_by_dataset``), when there are
    several tables to compare across; best per column starred."""
    from .pivots import models_by_dataset

    if len(groups) < 2:
        return ""
    table = models_by_dataset(df)
    mains = {key: ", ".join(main_metrics(rows, key)) for key, rows in groups}
    family = {str(r["label"]): _text(r, "family") for _, r in df.iterrows()}
    head = "".join(f'<th scope="col" class="num">{esc(group_title(k))}<br><small>{esc(mains.get(k, ""))}'
                   f"</small></th>" for k in table.columns)
    best = {k: (table[k].max() if table[k].notna().sum() >= 2 else None) for k in table.columns}
    rows = []
    for (label, precision, device), values in table.iterrows():
        cells = "".join(_overview_cell(values[k], best[k]) for k in table.columns)
        rows.append(f'<tr data-family="{esc(family.get(str(label), ""))}" data-model="{esc(label)}">'
                    f'<td class="model">{esc(label)}</td><td class="prov">{esc(precision)}</td>'
                    f'<td class="prov">{esc(device)}</td>{cells}</tr>')
    return ('<section class="overview">\n<h2>overview: main metric per table</h2>\n'
            '<div class="scroll"><table class="sortable">\n<thead><tr><th scope="col">model</th>'
            f'<th scope="col">precision</th><th scope="col">device</th>{head}</tr></thead>\n'
            f"<tbody>\n{chr(10).join(rows)}\n</tbody>\n</table></div>\n</section>")


def _overview_cell(value: float, best: float | None) -> str:
    if pd.isna(value):
        return f'<td class="num" data-sort="">{MISSING}</td>'
    mark = " best" if best is not None and math.isclose(value, best) else ""
    return f'<td class="num{mark}" data-sort="{float(value)!r}">{value:.2f}</td>'


def _section(key, rows: pd.DataFrame, history: pd.DataFrame | None, cache: QueryCache,
             options: PageOptions) -> str:
    task, dataset, _ = key
    cols = page_columns(task, rows)
    best = {c.key: _best(rows, c) for c in cols if c.better}
    meta = [f"sorted by {', '.join(main_metrics(rows, key)) or MISSING}"]
    n_images = sorted({int(n) for n in rows["n_images"].dropna()})
    if n_images:
        meta.append(f"{'/'.join(map(str, n_images))} images")
    prints = sorted({str(f) for f in rows["dataset_fingerprint"].dropna()})
    if len(prints) == 1:
        meta.append(f"fingerprint {prints[0][:12]}")
    head = "".join(f'<th scope="col"{" class=num" if c.numeric else ""} title="{esc(c.title)}">'
                   f"{esc(c.header)}</th>" for c in cols)
    body = "\n".join(_row(r, cols, best) for _, r in rows.iterrows())
    plots = _plots(rows, history, cache) if options.plots else ""
    return (f'<section class="group" data-task="{esc(task)}" data-dataset="{esc(dataset)}">\n'
            f"<h2>{esc(group_title(key))}</h2>\n<p class=\"meta\">{esc(' · '.join(meta))}</p>\n"
            f'<div class="scroll"><table class="sortable">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody>\n</table></div>\n{_sidecar_notes(rows)}"
            f"{captioning.table_note(task, options.uncertainty.n_boot)}{plots}</section>")


def _sidecar_notes(rows: pd.DataFrame) -> str:
    """One visible line per row whose intervals were dropped because its per-query file is
    unusable (truncated, stale): a missing interval is never silent."""
    return "".join(f'<p class="note warn">No intervals or lead test for <b>{esc(label)}</b>: {esc(why)}</p>\n'
                   for label, why in unusable_notes(rows))


def _best(rows: pd.DataFrame, col: Col) -> float | None:
    """The best value of a column, when at least two rows have one to compare."""
    if col.key not in rows.columns:
        return None
    values = rows[col.key].dropna()
    if len(values) < 2:
        return None
    return float(values.max() if col.better == "high" else values.min())


def _row(row: pd.Series, cols: list[Col], best: dict[str, float | None]) -> str:
    cells = "".join(_cell(row, c, best.get(c.key)) for c in cols)
    return (f'<tr data-family="{esc(_text(row, "family"))}" data-model="{esc(_text(row, "label"))}">'
            f"{cells}</tr>")


def _text(row: pd.Series, key: str) -> str:
    value = row.get(key)
    return "" if value is None or pd.isna(value) else str(value)


def _fmt(col: Col, value: float) -> str:
    if col.kind == "params":
        return f"{value / 1e6:,.1f}M" if value >= 1e5 else f"{value:,.0f}"
    if col.kind == "p":
        return f"{value:.3f}" if value >= 0.001 else "<0.001"
    if col.kind in ("ips", "mb"):
        return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    return f"{value:.2f}"


def _cell(row: pd.Series, col: Col, best: float | None) -> str:
    if col.kind == "model":
        tip = f"checkpoint {_text(row, 'checkpoint')} · run {_text(row, 'run_key')}"
        return f'<td class="model" title="{esc(tip)}">{esc(_text(row, "label"))}{_reproduced_mark(row)}</td>'
    if col.kind in ("text", "date", "sha"):
        return _prov_cell(row, col)
    value, own = row.get(col.key), col.key not in not_measured(row)
    if value is None or pd.isna(value):
        if not own:  # never the cache's speed shown as the model's
            return (f'<td class="num cached" data-sort="" title="{esc(_cached_note(row))}; no run of this '
                    f'model with these options encoded">cached</td>')
        return f'<td class="num" data-sort="">{MISSING}</td>'
    value = float(value)
    classes, extra, title = ["num"], "", ""
    if not own and _text(row, "throughput_from"):
        extra = ' <span class="borrowed">\u2020</span>'
        title = f"measured by {_text(row, 'throughput_from')}: {_cached_note(row)}"
    elif col.kind == "ms":
        title = f"stage: {_text(row, 'latency_stage')}"
    if best is not None and math.isclose(value, best, rel_tol=1e-9, abs_tol=1e-12):
        classes.append("best")
    if col.kind == "p":
        over = _text(row, "lead_over")
        if _lead_not_significant(row):
            classes.append("ns")
            extra = ' <span class="ns">\u2248</span>'
        title = f"lead over {over}: p = {value:.4f}"
    elif col.has_ci and not pd.isna(row.get(f"{col.key}_lo")):
        lo, hi = float(row[f"{col.key}_lo"]), float(row[f"{col.key}_hi"])
        extra = f'<span class="ci">{lo:.2f}\u2013{hi:.2f}</span>'
        title = f"95% bootstrap interval [{lo:.2f}, {hi:.2f}]"
    if col.key == row.get("main_metric") and _lead_not_significant(row):
        extra = f' <span class="ns" title="lead not significant">\u2248</span>{extra}'
    title_attr = f' title="{esc(title)}"' if title else ""
    return (f'<td class="{" ".join(classes)}" data-sort="{value!r}"{title_attr}>'
            f"{esc(_fmt(col, value))}{extra}</td>")


def _reproduced_mark(row: pd.Series) -> str:
    """A mark on a row that `vlbench verify` compared with a published number."""
    status = _text(row, "reproduced")
    if not status:
        return ""
    sign = {"reproduced": "\u2713 published", "not reproduced": "\u2717 published"}.get(status, "\u2260 protocol")
    cls = status.replace(" ", "-")
    return f' <span class="repro {esc(cls)}" title="{esc(_text(row, "reproduced_note"))}">{esc(sign)}</span>'


def _cached_note(row: pd.Series) -> str:
    return f"this run's {_text(row, 'throughput_cached')} came from the embedding cache"


def _lead_not_significant(row: pd.Series) -> bool:
    flag = row.get("lead_significant")
    return flag is not None and not pd.isna(flag) and not bool(flag)


def _prov_cell(row: pd.Series, col: Col) -> str:
    if col.key == "versions":
        parts = [f"{name} {_text(row, key)}" for name, key in
                 (("vlbench", "harness_version"), ("torch", "torch_version"), ("python", "python_version"))
                 if _text(row, key)]
        return f'<td class="prov">{esc(" · ".join(parts) or MISSING)}</td>'
    value = row.get(col.key)
    if value is None or pd.isna(value):
        return f'<td class="prov">{MISSING}</td>'
    if col.kind == "date":
        return (f'<td class="prov" data-sort="{value.timestamp():.0f}" title="{esc(value.isoformat())}">'
                f"{esc(f'{value:%Y-%m-%d %H:%M}')}</td>")
    if col.kind == "sha":
        return f'<td class="prov" title="{esc(value)}"><code>{esc(str(value)[:10])}</code></td>'
    if col.key == "device":
        return f'<td class="prov" title="{esc(_text(row, "device_name"))}">{esc(value)}</td>'
    if col.key == "batch_size":
        return f'<td class="prov" data-sort="{int(value)}">{int(value)}</td>'
    return f'<td class="prov">{esc(value)}</td>'


def _cached_caption(rows: pd.DataFrame) -> str:
    """What the plot did with runs whose encoders were served by the embedding cache."""
    cached = rows["throughput_cached"].notna() if "throughput_cached" in rows.columns else pd.Series(False)
    if not cached.any():
        return ""
    borrowed = int((cached & rows["throughput_from"].notna()).sum())
    left_out = int(cached.sum()) - borrowed
    parts = [f"{borrowed} plotted at the throughput of their latest run that encoded"] if borrowed else []
    parts += [f"{left_out} left out (no run measured them)"] if left_out else []
    return f" Runs served from the embedding cache: {'; '.join(parts)}."


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _plots(rows: pd.DataFrame, history: pd.DataFrame | None, cache: QueryCache) -> str:
    from . import plots

    figures = [
        (plots.tradeoff_plot(rows), "accuracy vs throughput",
         ("Main metric against evaluation throughput (images per second over all encode, score "
          "and rerank stages); the red step line is the Pareto "
          "frontier, its models labelled in bold." + _cached_caption(rows))),
        (plots.recall_curves_plot(rows, cache) if rows["task"].iloc[0] == "retrieval" else None,
         "recall@k curves", "Recall@k for k = 1\u202610 from the per-query first-hit ranks."),
        (plots.subset_bars_plot(rows) if rows["task"].iloc[0] == "caption_selection" else None,
         "accuracy per subset", "Caption-selection accuracy per subset and their mean, with 95% bootstrap "
         "intervals over items (resampled within subsets)."),
        (plots.agreement_scatter_plot(rows, cache) if rows["task"].iloc[0] == "human_agreement" else None,
         "model score vs human score",
         "Each judgment row: the model's score of the pair (CLIP-S or match score) against the human "
         "score (jittered); black bars: the median model score per human score."),
        (plots.latency_memory_plot(rows), "latency and memory",
         "Per-batch latency percentiles of the stage named beside each row (the image encode "
         "where it ran), and peak memory."),
        (plots.trend_plot(history) if history is not None else None, "trend",
         "Main metric of each entry across its recorded runs (oldest to newest)."),
    ]
    out = [f'<figure><img alt="{esc(alt)}" src="{_data_uri(png)}"><figcaption>{esc(caption)}'
           f"</figcaption></figure>" for png, alt, caption in figures if png]
    return f'<div class="plots">{"".join(out)}</div>\n' if out else ""
