"""The captioning table's uncertainty: which of its numbers get a bootstrap interval by image
and a paired test, and the note that says how (and why BLEU and METEOR get none).

CIDEr-D, ROUGE-L and SPICE as pycocoevalcap computes them, and CLIP-S / RefCLIP-S, are the mean
of per-image scores, which the run's sidecar keeps under the record key (overall, and per image
group: ``cider_out_domain`` holds that domain's own per-image CIDEr-D). Resampling images and
taking the mean again is then the bootstrap of the very number the table shows; CIDEr-D's
document frequencies stay those of the scored corpus (re-deriving them per resample would
count a repeated image's references twice). The paired test between two models resamples the
same images for both (``leaderboard.stats.paired_sum_pvalue``).
"""

from __future__ import annotations

import html

import numpy as np

from harness.metrics.captioning import PER_ITEM_MEAN, per_item_mean_metric

__all__ = ["has_caption_interval", "caption_parts", "group_columns", "table_note"]

NAMES = {"rouge_l": "ROUGE-L", "cider": "CIDEr-D", "spice": "SPICE", "clip_s": "CLIP-S", "refclip_s": "RefCLIP-S"}
NOTE = ("Intervals and the lead test for {means}: images resampled ({n_boot} times) and the mean of the "
        "per-image scores the run kept recomputed, which is the corpus score itself (CIDEr-D's document "
        "frequencies fixed at the scored corpus's). BLEU and METEOR have none: their corpus score is not a mean "
        "of per-image scores (BLEU sums n-gram statistics over the corpus under one brevity penalty; METEOR "
        "aggregates its alignment statistics over the corpus), and the per-image scores kept are not enough "
        "to recompute it on a resample.")


def has_caption_interval(key: str) -> bool:
    """Whether a captioning record key gets an interval (its corpus score is a per-image mean).

    >>> has_caption_interval("cider"), has_caption_interval("spice_in_domain"), has_caption_interval("bleu4")
    (True, True, False)
    """
    return per_item_mean_metric(key) is not None


def caption_parts(queries: dict[str, np.ndarray] | None, key: str) -> list[np.ndarray] | None:
    """The per-image scores whose mean is ``key``'s number, as one part; None when the sidecar
    lacks them (or ``key`` is not a per-image mean).

    >>> caption_parts({"cider": np.array([100.0, 50.0])}, "cider")[0].tolist()
    [100.0, 50.0]
    """
    if not queries or not has_caption_interval(key):
        return None
    values = queries.get(key)
    if values is None or values.size == 0 or values.ndim != 1 or not np.issubdtype(values.dtype, np.number):
        return None
    return [values.astype(np.float64)]


def group_columns(columns, notna) -> list[str]:
    """Per-group CIDEr-D and SPICE columns (NoCaps' domains, as its server's table shows them)
    among ``columns`` that some row fills (``notna(column)``), in column order."""
    return [c for c in columns if per_item_mean_metric(c) in ("cider", "spice") and c not in PER_ITEM_MEAN
            and notna(c)]


def table_note(task: str, n_boot: int) -> str:
    """The captioning table's note on its intervals (empty for other tasks)."""
    if task != "captioning":
        return ""
    means = ", ".join(NAMES[m] for m in PER_ITEM_MEAN)
    return f'<p class="note">{html.escape(NOTE.format(means=means, n_boot=n_boot))}</p>\n'
