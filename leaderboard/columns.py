"""Which columns the HTML page shows per task, how each is labelled, and which way is better."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .captioning import group_columns
from .frame import RETRIEVAL_METRICS, ZEROSHOT_METRICS
from .uncertainty import has_interval


@dataclass(frozen=True)
class Col:
    key: str                  # frame column (or a derived one: "lead_p", "versions")
    header: str
    kind: str = "metric"      # metric | ips | ms | mb | params | p | model | text | date | sha
    better: str | None = None  # "high" / "low": the best value is marked; None: not ranked
    title: str = ""           # header tooltip: what the number is

    @property
    def numeric(self) -> bool:
        return self.kind not in ("model", "text", "date", "sha")

    @property
    def has_ci(self) -> bool:
        return has_interval(self.key)


_HEADERS = {"rsum": "RSUM", "acc1": "acc@1", "acc5": "acc@5", "macro_f1": "macro F1",
            "balanced_acc": "bal. acc", "kendall_tau_c": "Kendall \u03c4c", "kendall_tau_b": "Kendall \u03c4b"}
_TITLES = {"kendall_tau_c": "Kendall tau-c x 100 of model score vs human score (CLIPScore protocol)",
           "kendall_tau_b": "Kendall tau-b x 100 of model score vs human score (CLIPScore protocol)"}


def _metric(key: str) -> Col:
    header = _HEADERS.get(key, key.replace("_R@", " R@"))
    lower = key.endswith(("_medr", "_meanr"))
    return Col(key, header, "metric", "low" if lower else "high",
               "rank of the first correct item (lower is better)" if lower else _TITLES.get(key, "percent"))


_TAIL = [
    Col("lead_p", "p vs next", "p", None,
        "paired bootstrap p-value of this row's lead on the main metric over the next row "
        "(main-metric order); orange: not significant at 0.05"),
    Col("ips_eval", "eval img/s", "ips", "high",
        "images / seconds of all evaluation stages (encode, score, rerank)"),
    Col("ips_image_encode", "img/s", "ips", "high", "image encode items/s (after warm-up)"),
    Col("ips_text_encode", "txt/s", "ips", "high", "text encode items/s (after warm-up)"),
    Col("ips_rerank", "rerank/s", "ips", "high", "cross-encoder reranking items/s"),
    Col("ips_generate", "gen img/s", "ips", "high", "captioning: images captioned per second (after warm-up)"),
    Col("latency_p50_ms", "p50 ms", "ms", "low", "per-batch latency of the main encode stage"),
    Col("latency_p90_ms", "p90 ms", "ms", "low", "per-batch latency of the main encode stage"),
    Col("peak_rss_mb", "peak RSS MB", "mb", "low", "peak host memory (resident set)"),
    Col("peak_device_mem_mb", "peak dev MB", "mb", "low", "peak accelerator memory"),
    Col("params", "params", "params", None, "parameter count"),
    Col("device", "device", "text"), Col("precision", "precision", "text"),
    Col("batch_size", "batch", "text"), Col("created_at", "date", "date"),
    Col("git_sha", "git sha", "sha"), Col("versions", "versions", "text"),
]
_ALWAYS = {"lead_p", "ips_eval", "ips_image_encode", "ips_text_encode", "latency_p50_ms",
           "latency_p90_ms", "peak_rss_mb", "params", "device", "precision", "batch_size",
           "created_at", "git_sha", "versions"}
OPTIONAL_METRICS = {"retrieval": ["hn_binding", "hn_relation"]}
# human_agreement has no fixed list: a table shows the tau its rows report (Expert c, CF b)
# captioning: CIDEr-D (main) first, then the COCO caption metrics and CLIPScore, when reported
CAPTION_METRICS = ["cider", "bleu1", "bleu4", "meteor", "rouge_l", "spice", "clip_s", "refclip_s"]
TASK_METRICS = {"retrieval": RETRIEVAL_METRICS, "zeroshot": ZEROSHOT_METRICS, "linear_probe": ZEROSHOT_METRICS}


def page_columns(task: str, rows: pd.DataFrame) -> list[Col]:
    """The page's columns for one table: model, the task's metrics (with any optional ones the
    rows report), the lead test, throughput, latency, memory, size, provenance."""
    metrics = list(TASK_METRICS.get(task, []))
    if task == "captioning":  # the metrics a run could compute here (no SPICE models, no judge: absent)
        metrics = [m for m in CAPTION_METRICS if m in rows.columns and rows[m].notna().any()]
        metrics += group_columns(rows.columns, lambda c: rows[c].notna().any())  # NoCaps: per domain
    if task == "caption_selection":
        from .selection import caption_columns

        metrics = caption_columns(rows)
    if not metrics:  # unknown task: whatever metric columns its rows fill
        first, last = rows.columns.get_loc("main_value") + 1, rows.columns.get_loc("device")
        metrics = [c for c in rows.columns[first:last] if rows[c].notna().any()]
    metrics += [c for c in OPTIONAL_METRICS.get(task, []) if c in rows.columns and rows[c].notna().any()]
    cols = [Col("label", "model", "model"), *(_metric(m) for m in metrics)]
    for col in _TAIL:
        if col.key in _ALWAYS or (col.key in rows.columns and rows[col.key].notna().any()):
            cols.append(col)
    return cols
