"""Leaderboard plots as PNG bytes (matplotlib's Agg canvas; no pyplot, no global state).

Each function takes the rows of one (task, dataset, split) table and returns PNG bytes, or
None when there is nothing to draw. The page embeds them as base64 data URIs.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .uncertainty import QueryCache

DPI = 96
MAX_K = 10
_METRIC_NAMES = {"rsum": "RSUM", "acc1": "top-1 accuracy (%)"}


def pareto_front(throughput: Sequence[float], accuracy: Sequence[float]) -> list[bool]:
    """Which points no other point beats on both axes (higher is better on each; a point
    equal on one axis and better on the other dominates). NaN points are never on it.

    >>> pareto_front([10, 5, 1, 4], [50, 60, 90, 55])
    [True, True, True, False]
    """
    pts = [(float(x), float(y)) for x, y in zip(throughput, accuracy)]
    ok = [not (math.isnan(x) or math.isnan(y)) for x, y in pts]

    def dominated(i: int) -> bool:
        x, y = pts[i]
        return any(ok[j] and j != i and pts[j][0] >= x and pts[j][1] >= y and pts[j] != pts[i]
                   for j in range(len(pts)))

    return [ok[i] and not dominated(i) for i in range(len(pts))]


def names(rows: pd.DataFrame) -> list[str]:
    """Display names for plot legends: the row label, with precision/device added where two
    rows of the table would otherwise share one."""
    labels = [str(v) for v in rows["label"]]
    out = []
    for label, prec, dev in zip(labels, rows["precision"], rows["device"]):
        extra = [str(v) for v in (prec, dev) if not pd.isna(v)]
        out.append(literal(f"{label} [{' '.join(extra)}]" if labels.count(label) > 1 and extra else label))
    return out


def literal(text: str) -> str:
    """``text`` shown as typed: matplotlib reads a pair of ``$`` as mathtext (and fails on
    most model names that have them), so each is escaped.

    >>> print(literal("cost $5-$10"))
    cost \\$5-\\$10
    """
    return text.replace("$", r"\$")


def _figure(width: float, height: float, ncols: int = 1, left: float = 0.75, bottom: float = 0.6,
            top: float = 0.35, right: float = 0.2, wspace: float = 0.25):
    """A figure with fixed margins in inches (constrained layout would double the render time)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wspace)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def tradeoff_plot(rows: pd.DataFrame) -> bytes | None:
    """Main metric vs evaluation throughput (images/s over all encode/score/rerank stages),
    the Pareto frontier drawn as a step line and its points labelled in bold."""
    sub = rows[rows["main_value"].notna() & rows["ips_eval"].notna() & (rows["ips_eval"] > 0)]
    if sub.empty:
        return None
    x, y, labels = sub["ips_eval"].to_numpy(float), sub["main_value"].to_numpy(float), names(sub)
    front = pareto_front(x, y)
    fig, (ax,) = _figure(5.2, 3.6)
    # Labels of points at similar accuracy alternate above/below so they do not overprint.
    rank = np.argsort(np.argsort(y, kind="stable"), kind="stable")
    for xi, yi, r, label, colour, on in zip(x, y, rank, labels, _colours(len(x)), front):
        ax.scatter([xi], [yi], s=46 if on else 30, color=colour, edgecolor="black" if on else "none", zorder=3)
        right = xi == x.max() and len(x) > 1  # the fastest point's label goes left, inside the axes
        ax.annotate(label, (xi, yi), xytext=(-6 if right else 5, 4 if r % 2 == 0 else -11),
                    textcoords="offset points", ha="right" if right else "left",
                    fontsize=7.5, fontweight="bold" if on else "normal")
    mask = np.array(front, dtype=bool)
    fx, fy = x[mask], y[mask]
    order = np.argsort(-fx)
    ax.step(fx[order], fy[order], where="post", color="#c0392b", lw=1.5, zorder=2, marker="o", ms=11,
            mfc="none", mec="#c0392b", label="Pareto frontier (no other model is faster and better)")
    log = x.max() / x.min() > 10  # log only when speeds span a decade; else its ticks crowd
    if log:
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"evaluation throughput (images/s{', log scale' if log else ''})")
    metric = str(sub["main_metric"].iloc[0])
    ax.set_ylabel(_METRIC_NAMES.get(metric, metric))
    ax.set_title("accuracy vs throughput", fontsize=10)
    ax.legend(fontsize=7.5, loc="lower left")
    ax.margins(x=0.25, y=0.12)
    return _png(fig)


def recall_curves_plot(rows: pd.DataFrame, cache: QueryCache) -> bytes | None:
    """Recall@k for k = 1..10, text->image and image->text, one line per row, from the
    first-hit ranks in the per-query sidecars."""
    curves = []
    for label, path in zip(names(rows), rows["path"]):
        queries = cache.get(path)
        if queries and "t2i_rank" in queries and "i2t_rank" in queries:
            curves.append((label, recall_curve(queries["t2i_rank"]), recall_curve(queries["i2t_rank"])))
    if not curves:
        return None
    fig, axes = _figure(7.0, 3.3, ncols=2, left=0.6, wspace=0.12)
    ks = np.arange(1, MAX_K + 1)
    for (label, t2i, i2t), colour in zip(curves, _colours(len(curves))):
        axes[0].plot(ks, t2i, marker="o", ms=3, color=colour, label=label)
        axes[1].plot(ks, i2t, marker="o", ms=3, color=colour, label=label)
    for ax, title in zip(axes, ("text \u2192 image", "image \u2192 text")):
        ax.set_xticks(ks)
        ax.set_ylim(-2, 102)
        ax.set_xlabel("k")
        ax.set_title(f"recall@k, {title}", fontsize=10)
    axes[0].set_ylabel("recall@k (%)")
    axes[1].legend(fontsize=7, loc="lower right")
    return _png(fig)


def recall_curve(ranks: np.ndarray, max_k: int = MAX_K) -> np.ndarray:
    """Recall@k in percent for k = 1..max_k from 1-based first-hit ranks.

    >>> recall_curve(np.array([1, 2, 11, 3]), 3).tolist()
    [25.0, 50.0, 75.0]
    """
    ranks = np.asarray(ranks)
    return np.array([100.0 * np.mean(ranks <= k) for k in range(1, max_k + 1)])


def latency_memory_plot(rows: pd.DataFrame) -> bytes | None:
    """Per-batch latency p50/p90/p99 of the main encode stage, and peak memory, per row."""
    has_lat = rows[["latency_p50_ms", "latency_p90_ms", "latency_p99_ms"]].notna().any(axis=1)
    has_mem = rows[["peak_rss_mb", "peak_device_mem_mb"]].notna().any(axis=1)
    sub = rows[has_lat | has_mem]
    if sub.empty:
        return None
    labels, pos = names(sub), np.arange(len(sub))
    left = 0.3 + 0.055 * max(len(label) for label in labels)  # room for the longest name at 7.5pt
    fig, axes = _figure(left + 5.6, 1.3 + 0.45 * len(sub), ncols=2, left=left, bottom=0.5, wspace=0.08)
    width = 0.26
    for i, (col, name) in enumerate([("latency_p50_ms", "p50"), ("latency_p90_ms", "p90"),
                                     ("latency_p99_ms", "p99")]):
        axes[0].barh(pos + (i - 1) * width, sub[col].fillna(0).to_numpy(float), height=width, label=name)
    stage = ", ".join(sorted({str(s) for s in sub["latency_stage"].dropna()})) or "main stage"
    axes[0].set_title(f"latency per batch ({stage})", fontsize=10)
    axes[0].set_xlabel("ms")
    axes[0].legend(fontsize=7)
    mem_cols = [(c, n) for c, n in (("peak_rss_mb", "host RSS"), ("peak_device_mem_mb", "device"))
                if sub[c].notna().any()]
    for i, (col, name) in enumerate(mem_cols):
        offset = (i - (len(mem_cols) - 1) / 2) * 0.38
        axes[1].barh(pos + offset, sub[col].fillna(0).to_numpy(float), height=0.38, label=name)
    axes[1].set_title("peak memory", fontsize=10)
    axes[1].set_xlabel("MB")
    if mem_cols:
        axes[1].legend(fontsize=7)
    for ax in axes:
        ax.set_yticks(pos)
        ax.set_yticklabels(labels, fontsize=7.5)
        ax.invert_yaxis()
    axes[1].set_yticklabels([])
    return _png(fig)


def trend_plot(history: pd.DataFrame) -> bytes | None:
    """Main metric over recorded runs, one line per leaderboard entry that has 2+ records."""
    sub = history[history["main_value"].notna()]
    if sub.empty:
        return None
    series = []
    for _, runs in sub.groupby(["label", "precision", "device"], dropna=False, sort=True):
        if len(runs) >= 2:
            runs = runs.sort_values("created_at")
            series.append((names(runs.iloc[:1])[0], runs))
    if not series:
        return None
    fig, (ax,) = _figure(5.2, 3.3, bottom=0.85)
    for (label, runs), colour in zip(series, _colours(len(series))):
        when = [t.tz_convert(None).to_pydatetime() for t in runs["created_at"]]
        ax.plot(when, runs["main_value"].to_numpy(float), marker="o", ms=4, color=colour, label=label)
    metric = str(sub["main_metric"].iloc[0])
    ax.set_ylabel(_METRIC_NAMES.get(metric, metric))
    ax.set_title(f"{metric} across recorded runs", fontsize=10)
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    return _png(fig)


def subset_bars_plot(rows: pd.DataFrame) -> bytes | None:
    """Caption selection: accuracy per subset (``acc_<subset>``, the pinned macro variant where a
    subset has one), one bar per row, 95% bootstrap intervals as error bars when the frame holds
    them, and the macro mean ``acc`` as the last group; Winoground's scores where reported."""
    from .selection import caption_columns

    keys = [k for k in caption_columns(rows) if not k.endswith(("_micro", "_macro"))]
    keys = [k for k in keys if k != "acc"] + (["acc"] if "acc" in keys else [])
    if not keys:
        return None
    labels = names(rows)
    n, width = len(rows), 0.8 / max(len(rows), 1)
    fig, (ax,) = _figure(max(5.2, 0.55 * len(keys) * max(1, n / 2) + 1.2), 4.0, bottom=1.5)
    x = np.arange(len(keys))
    for i, ((_, row), label, colour) in enumerate(zip(rows.iterrows(), labels, _colours(n))):
        values = np.array([row.get(k, np.nan) for k in keys], dtype=float)
        lo = np.array([row.get(f"{k}_lo", np.nan) for k in keys], dtype=float)
        hi = np.array([row.get(f"{k}_hi", np.nan) for k in keys], dtype=float)
        err = np.vstack([values - lo, hi - values])
        ax.bar(x + (i - (n - 1) / 2) * width, values, width, color=colour, label=label,
               yerr=np.where(np.isnan(err), 0, err), error_kw={"lw": 0.8, "capsize": 1.5})
    ax.set_xticks(x)
    ax.set_xticklabels([k.removeprefix("acc_") if k != "acc" else "acc (mean)" for k in keys],
                       rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 102)
    ax.set_ylabel("accuracy (%)")
    ax.set_title("caption selection per subset (ties wrong)", fontsize=10)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=min(n, 4), frameon=False)
    return _png(fig)
