"""The leaderboard frame -> one self-contained HTML page (inline CSS and JS, no network)."""

from __future__ import annotations

import html
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from .frame import load
from .tables import (fmt, group_title, is_numeric, label, main_metrics, main_table,
                     select_group)

DEFAULT_TITLE = "vlbench leaderboard"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#222}
h1{font-size:1.5rem;margin:0 0 .25rem}h2{font-size:1.1rem;margin:2rem 0 .25rem}
.meta{color:#666;margin:.1rem 0 .6rem}
table{border-collapse:collapse;margin-bottom:1rem}
th,td{padding:.3rem .6rem;border-bottom:1px solid #e3e3e3;white-space:nowrap}
th{background:#f5f5f5;text-align:left;cursor:pointer;user-select:none}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums}
th[aria-sort=descending]::after{content:" \\25BE"}th[aria-sort=ascending]::after{content:" \\25B4"}
tbody tr:first-child td{font-weight:600}tbody tr:hover{background:#fafafa}
code{font-size:.9em}
""".strip()

# Click a header to sort by it; numeric cells sort by their data-sort value, blanks last.
_JS = """
document.querySelectorAll("table.sortable").forEach(function (t) {
  t.querySelectorAll("th").forEach(function (th, i) {
    th.addEventListener("click", function () {
      var desc = th.getAttribute("aria-sort") !== "descending";
      t.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", desc ? "descending" : "ascending");
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var key = function (r) { var c = r.cells[i], v = c.getAttribute("data-sort");
        return v === null ? c.textContent : (v === "" ? null : parseFloat(v)); };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return (x === null) - (y === null); }
        var r = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
        return desc ? -r : r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
""".strip()


def esc(value: Any) -> str:
    """Escape anything that came from a record (model names, datasets, versions...)."""
    return html.escape("" if value is None else str(value), quote=True)


def render_html(df: pd.DataFrame, title: str = DEFAULT_TITLE) -> str:
    """One page with a sortable table per (task, dataset, split), best main metric first."""
    tables = main_table(df)
    body = [f"<h1>{esc(title)}</h1>", f'<p class="meta">{esc(_summary(df, len(tables)))}</p>']
    if not tables:
        body.append("<p>No results yet. Run <code>vlbench run ...</code> and rebuild.</p>")
    for key, table in tables.items():
        body.append(_section(df, key, table))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>\n{_JS}\n</script>\n</body>\n</html>\n"
    )


def build(results_dir: str | Path, out_path: str | Path, title: str = DEFAULT_TITLE,
          history: bool = False) -> Path:
    """Load the records under ``results_dir`` and write the page to ``out_path`` atomically."""
    page = render_html(load(results_dir, history=history), title=title)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def _summary(df: pd.DataFrame, n_tables: int) -> str:
    if df.empty:
        return "0 runs"
    latest = df["created_at"].max()
    when = "" if pd.isna(latest) else f" \u00b7 latest run {latest:%Y-%m-%d %H:%M} UTC"
    return f"{len(df)} runs \u00b7 {n_tables} tables{when}"


def _section(df: pd.DataFrame, key: tuple[str, str, str], table: pd.DataFrame) -> str:
    group = select_group(df, key)
    meta = [f"sorted by {', '.join(main_metrics(df, key)) or '-'}"]
    n_images = sorted({int(n) for n in group["n_images"].dropna()})
    if n_images:
        meta.append(f"{'/'.join(map(str, n_images))} images")
    prints = sorted({str(f) for f in group["dataset_fingerprint"].dropna()})
    if len(prints) == 1:
        meta.append(f"fingerprint {prints[0][:12]}")
    head = "".join(f'<th scope="col"{_cls(c)}>{esc(label(c))}</th>' for c in table.columns)
    rows = []
    for _, row in table.iterrows():
        cells = "".join(_cell(c, row[c]) for c in table.columns)
        rows.append(f"<tr>{cells}</tr>")
    return (
        f"<section>\n<h2>{esc(group_title(key))}</h2>\n"
        f'<p class="meta">{esc(" · ".join(meta))}</p>\n'
        f'<table class="sortable">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(rows) + "\n</tbody>\n</table>\n</section>"
    )


def _cls(col: str) -> str:
    return ' class="num"' if is_numeric(col) else ""


def _cell(col: str, value: Any) -> str:
    text = esc(fmt(col, value))
    if col == "git_sha" and not pd.isna(value):
        return f'<td title="{esc(value)}"><code>{text}</code></td>'
    if col == "created_at" and not pd.isna(value):
        return f'<td data-sort="{value.timestamp():.0f}" title="{esc(value.isoformat())}">{text}</td>'
    if is_numeric(col):
        sort = "" if pd.isna(value) else repr(float(value))
        return f'<td class="num" data-sort="{sort}">{text}</td>'
    return f"<td>{text}</td>"
