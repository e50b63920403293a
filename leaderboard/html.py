"""Build the leaderboard page: load records (latest + history) -> render -> atomic write.

The page itself is made in page.py (tables, filters, intervals), plots.py (PNG figures) and
assets/ (CSS and JS inlined at build time).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from harness.results.store import write_bytes_atomic, write_target

from . import perf
from .frame import load
from .page import DEFAULT_TITLE, PageOptions, esc, render_page

__all__ = ["DEFAULT_TITLE", "PageOptions", "build", "esc", "render_html"]


def render_html(df: pd.DataFrame, title: str | None = None, history: pd.DataFrame | None = None,
                options: PageOptions | None = None) -> str:
    """One page with a sortable table per (task, dataset, split), best main metric first;
    ``history`` (``load(..., history=True)``) adds the trend plots; ``title`` overrides
    ``options.title``."""
    options = options or PageOptions()
    return render_page(df, history, replace(options, title=title) if title is not None else options)


def build(results_dir: str | Path, out_path: str | Path, title: str | None = None,
          options: PageOptions | None = None) -> Path:
    """Load the records under ``results_dir`` and write the page to ``out_path`` atomically
    (a failure leaves any previous page in place and no temp file behind). A symlinked
    ``out_path`` is written through to its target; anything but a regular file is refused."""
    out = Path(out_path)
    write_target(out)  # refuse a device node, FIFO or folder before the (slow) render
    history = load(results_dir, history=True)
    options = replace(options or PageOptions(), perf_check=perf.read(results_dir))
    page = render_html(load(results_dir), title=title, history=history, options=options)
    return write_bytes_atomic(out, page.encode("utf-8"))
