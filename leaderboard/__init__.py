"""vlbench leaderboard: result records -> pandas DataFrame -> text table / HTML page.

The pipeline has three seams, each usable on its own:

    df = load(results_dir)             # frame.py: records -> one typed row per entry (latest)
    hist = load(results_dir, history=True)   # every record, for trends
    models_by_dataset(df, "retrieval") # pivots.py: label x dataset on the main metric
    dataset_metrics(df, "synthetic")   # pivots.py: one dataset, every metric
    tables = main_table(df)            # tables.py: compact per-(task, dataset, split) views
    page = render_html(df, history=hist)  # page.py + plots.py + assets/: one offline HTML page
    build(results_dir, out_path)       # load + render + atomic write (html.py)

Importing this package is cheap: submodules (and pandas) load on first attribute use,
and nothing here imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .frame import COLUMNS, ENTRY_KEY, METRIC_KEYS, LeaderboardError, load, records_to_frame
    from .html import PageOptions, build, render_html
    from .pivots import dataset_metrics, models_by_dataset
    from .tables import format_text, main_table
    from .uncertainty import UncertaintyOptions, annotate

_EXPORTS = {
    "load": "frame",
    "records_to_frame": "frame",
    "LeaderboardError": "frame",
    "COLUMNS": "frame",
    "METRIC_KEYS": "frame",
    "ENTRY_KEY": "frame",
    "models_by_dataset": "pivots",
    "dataset_metrics": "pivots",
    "annotate": "uncertainty",
    "UncertaintyOptions": "uncertainty",
    "PageOptions": "html",
    "main_table": "tables",
    "format_text": "tables",
    "render_html": "html",
    "build": "html",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'leaderboard' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
