"""The page's image + text -> label part (``image_text_classification``): per dataset a table of
each model's fused, image-only and text-only probe and the modality gain, with 95% bootstrap
intervals over items from the per-item sidecar (the three probes resampled together, so the
gain's interval is a paired one); per-class F1 bars; the confusion matrix of the best model.

Reads each row's record (per-class F1, class names, confusion matrix) and its sidecar (label
and the three probes' predictions); a row without a usable sidecar shows its numbers without
intervals, and says so.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

TASK = "image_text_classification"
N_BOOT = 1000
SEED = 0
ALPHA = 0.05


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _record(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _queries(path: str) -> dict | None:
    from .stats import load_queries

    try:
        return load_queries(path)
    except (OSError, ValueError):
        return None


def accuracy_intervals(label, pred, pred_image, pred_text, n_boot: int = N_BOOT, seed: int = SEED) -> dict:
    """Percentile intervals (points) for fused, image-only and text-only accuracy and the
    modality gain, from one set of item resamples (single-label items).

    >>> ci = accuracy_intervals([0, 1] * 20, [0, 1] * 20, [0, 0] * 20, [1, 1] * 20, n_boot=200)
    >>> lo, hi = ci["acc_image_only"]  # always class 0 on balanced labels: 50% give or take
    >>> ci["acc"], lo < 50.0 < hi, ci["modality_gain"][1] <= 50.0  # image + text accuracy = 100 per resample
    ((100.0, 100.0), True, True)
    """
    hits = np.stack([np.asarray(p) == np.asarray(label) for p in (pred, pred_image, pred_text)]).astype(np.float64)
    n = hits.shape[1]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    acc = 100.0 * hits[:, idx].mean(-1)               # (3, n_boot)
    gain = acc[0] - np.maximum(acc[1], acc[2])
    q = [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)]
    out = {k: tuple(float(v) for v in np.percentile(a, q)) for k, a in
           (("acc", acc[0]), ("acc_image_only", acc[1]), ("acc_text_only", acc[2]), ("modality_gain", gain))}
    return out


def _cell(value, ci=None) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "<td class=num>–</td>"
    text = f"{value:.1f}"
    if ci is not None:
        text += f' <span class="ci">[{ci[0]:.1f}, {ci[1]:.1f}]</span>'
    return f"<td class=num>{text}</td>"


def _table(rows: list[dict]) -> str:
    head = ("<tr><th>model</th><th>features</th><th class=num>acc fused</th><th class=num>acc image only</th>"
            "<th class=num>acc text only</th><th class=num>modality gain</th><th class=num>macro-F1 fused</th>"
            "<th class=num>macro-F1 image</th><th class=num>macro-F1 text</th><th class=num>AUROC</th></tr>")
    body = []
    for r in rows:
        m, ci = r["metrics"], r["ci"] or {}
        body.append("<tr>" + f"<td>{esc(r['model'])}</td><td>{esc(r['features'])}</td>"
                    + _cell(m.get("acc"), ci.get("acc")) + _cell(m.get("acc_image_only"), ci.get("acc_image_only"))
                    + _cell(m.get("acc_text_only"), ci.get("acc_text_only"))
                    + _cell(m.get("modality_gain"), ci.get("modality_gain"))
                    + "".join(_cell(m.get(k)) for k in ("macro_f1", "macro_f1_image_only", "macro_f1_text_only",
                                                          "auroc")) + "</tr>")
    return f'<div class="scroll"><table class="sortable"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table></div>'


def per_class_bars(rows: list[dict]) -> bytes | None:
    """Per-class F1 of each model's fused probe, grouped by class."""
    rows = [r for r in rows if r["per_class_f1"]]
    if not rows:
        return None
    from .plots import _colours, _figure, _png, literal

    classes = list(rows[0]["per_class_f1"])[:30]
    width = max(4.0, 0.35 * len(classes) * max(1, len(rows)) / 2 + 1.5)
    fig, (ax,) = _figure(width, 3.0, bottom=1.0)
    step = 0.8 / len(rows)
    for i, (r, colour) in enumerate(zip(rows, _colours(len(rows)))):
        vals = [r["per_class_f1"].get(c) or 0.0 for c in classes]
        ax.bar(np.arange(len(classes)) + i * step - 0.4 + step / 2, vals, step, color=colour, label=literal(r["model"]))
    ax.set_xticks(np.arange(len(classes)), [literal(c) for c in classes], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("F1 (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=6, loc="lower right")
    return _png(fig)


def _confusion(row: dict) -> str:
    conf, names = row["confusion"], row["classnames"]
    if not conf:
        return ""
    head = "<tr><th>true \\ predicted</th>" + "".join(f"<th class=num>{esc(c)}</th>" for c in names) + "</tr>"
    body = "".join(f"<tr><th scope=row>{esc(names[i])}</th>" + "".join(f"<td class=num>{v}</td>" for v in line)
                   + "</tr>" for i, line in enumerate(conf))
    return (f"<h3>confusion matrix of the best model ({esc(row['model'])}, macro-F1 "
            f"{row['metrics'].get('macro_f1', 0):.1f})</h3><div class=\"scroll\"><table>{head}{body}</table></div>")


def _row(r: pd.Series) -> dict:
    rec = _record(r["path"])
    opts = rec.get("options", {})
    q = _queries(r["path"])
    ci = None
    if q is not None and all(k in q for k in ("label", "pred", "pred_image_only", "pred_text_only")) \
            and q["label"].dtype != object and q["label"].ndim == 1:
        ci = accuracy_intervals(q["label"], q["pred"], q["pred_image_only"], q["pred_text_only"])
    confusion = opts.get("confusion")
    if confusion is None and q is not None and "label" in q and q["label"].ndim == 1 and opts.get("classnames"):
        k = len(opts["classnames"])
        confusion = np.bincount(q["label"].astype(int) * k + q["pred"].astype(int), minlength=k * k).reshape(k, k).tolist()
    return {"model": r["label"] if isinstance(r.get("label"), str) else r["model"],
            "features": f"{opts.get('probe_features', '?')} / {opts.get('probe_head', '?')}",
            "metrics": rec.get("metrics", {}), "ci": ci, "per_class_f1": opts.get("per_class_f1") or {},
            "confusion": confusion, "classnames": opts.get("classnames") or [], "has_sidecar": q is not None}


def section(df: pd.DataFrame) -> str:
    """The HTML of every image_text_classification dataset in ``df`` (latest rows), or ""."""
    if df.empty or "task" not in df:
        return ""
    parts = []
    for (dataset, split), sub in df[df["task"] == TASK].groupby(["dataset", "split"], sort=True):
        rows = sorted((_row(r) for _, r in sub.iterrows()), key=lambda x: -(x["metrics"].get("macro_f1") or 0))
        png = per_class_bars(rows)
        figure = (f'<figure><img alt="per-class F1" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
                  "<figcaption>Per-class F1 of each model's fused probe.</figcaption></figure>") if png else ""
        missing = [r["model"] for r in rows if r["ci"] is None]
        note = (f'<p class="note warn">No intervals for {esc(", ".join(missing))}: no usable per-item sidecar '
                "(or multi-label items).</p>") if missing else ""
        parts.append(f'<section class="group" data-task="{TASK}" data-dataset="{esc(dataset)}">'
                     f"<h2>{esc(dataset)}/{esc(split)}: fused vs single-modality probes</h2>"
                     "<p class=\"meta\">accuracy in % with 95% bootstrap intervals over items; modality gain = fused "
                     "accuracy minus the better single-modality accuracy (resampled together)</p>"
                     f"{_table(rows)}{note}{figure}{_confusion(rows[0]) if rows else ''}</section>")
    return "\n".join(parts)
