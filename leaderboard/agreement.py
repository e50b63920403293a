"""The page's "which metric agrees with people" table: every scorer of ``human_agreement``,
caption metrics (``metric:NAME``) and models side by side, by its Kendall tau on each set
of judgments (Flickr8k-Expert tau-c, CF tau-b, ...) with the bootstrap interval over query
images when the row has one; best first on the judgments most scorers ran. Hessel et al. 2021, Table 1/2,
as a table of the store. Shown when two or more scorers have a human_agreement record.
"""

from __future__ import annotations

import html
import math

import pandas as pd

TASK = "human_agreement"
KINDS = {"metric": "caption metric", "dual": "model (CLIP-S)", "cross": "model (match score)",
         "both": "model (match score)"}


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def agreement_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per scorer (label, kind, precision, device), one column per (dataset, split):
    the main metric (tau x 100), and ``(lo, hi)`` when the row carries its interval.

    >>> df = pd.DataFrame({"task": ["human_agreement"] * 3, "label": ["metric:cider", "clip", "clip"],
    ...     "kind": ["metric", "dual", "dual"], "precision": ["fp32"] * 3, "device": ["cpu"] * 3,
    ...     "dataset": ["flickr8k-expert", "flickr8k-expert", "flickr8k-cf"], "split": ["test"] * 3,
    ...     "main_metric": ["kendall_tau_c", "kendall_tau_c", "kendall_tau_b"], "main_value": [43.9, 51.2, 34.4]})
    >>> agreement_table(df)[("flickr8k-expert", "test")].tolist()
    [(51.2, None, None), (43.9, None, None)]
    """
    sub = rows[rows["task"] == TASK]
    cells: dict[tuple, dict] = {}
    for _, r in sub.iterrows():
        key = (str(r["label"]), str(r.get("kind", "")), str(r.get("precision", "")), str(r.get("device", "")))
        metric = str(r["main_metric"])
        lo, hi = r.get(f"{metric}_lo"), r.get(f"{metric}_hi")
        ci = (float(lo), float(hi)) if lo is not None and hi is not None and not (pd.isna(lo) or pd.isna(hi)) else (None, None)
        cells.setdefault(key, {})[(str(r["dataset"]), str(r["split"]))] = (float(r["main_value"]), *ci)
    if not cells:
        return pd.DataFrame()
    columns = sorted({c for row in cells.values() for c in row})
    table = pd.DataFrame([[row.get(c) for c in columns] for row in cells.values()],
                         index=pd.MultiIndex.from_tuples(list(cells), names=["scorer", "kind", "precision", "device"]),
                         columns=pd.MultiIndex.from_tuples(columns, names=["dataset", "split"]))
    # best first on the judgments the most scorers have run (ties: the first such column); no run last
    lead = max(columns, key=lambda c: table[c].map(lambda v: isinstance(v, tuple)).sum())
    order = table[lead].map(lambda v: -v[0] if isinstance(v, tuple) and not math.isnan(v[0]) else math.inf)
    return table.iloc[order.argsort(kind="stable")]


def section(rows: pd.DataFrame) -> str:
    """The table as an HTML section ("" when fewer than two scorers have agreement records)."""
    if rows.empty or "task" not in rows.columns:
        return ""
    table = agreement_table(rows)
    if len(table) < 2:
        return ""
    head = "".join(f'<th scope="col" class="num">{_esc(d)} / {_esc(s)}</th>' for d, s in table.columns)
    body = []
    for (scorer, kind, precision, device), values in table.iterrows():
        cells = "".join(_cell(v) for v in values)
        body.append(f'<tr><td class="model">{_esc(scorer)}</td><td class="prov">{_esc(KINDS.get(kind, kind))}</td>'
                    f'<td class="prov">{_esc(precision)}</td><td class="prov">{_esc(device)}</td>{cells}</tr>')
    return ('<section class="overview agreement">\n<h2>which metric agrees with people: Kendall \u03c4 \u00d7 100 '
            'against human judgments</h2>\n<div class="scroll"><table class="sortable">\n<thead><tr>'
            '<th scope="col">scorer</th><th scope="col">kind</th><th scope="col">precision</th>'
            f'<th scope="col">device</th>{head}</tr></thead>\n<tbody>\n' + "\n".join(body)
            + "\n</tbody>\n</table></div>\n</section>")


def _cell(value) -> str:
    if not isinstance(value, tuple) or math.isnan(value[0]):
        return '<td class="num" data-sort="">-</td>'
    tau, lo, hi = value
    ci = f' <small>[{lo:.1f}, {hi:.1f}]</small>' if lo is not None else ""
    return f'<td class="num" data-sort="{tau!r}">{tau:.2f}{ci}</td>'
