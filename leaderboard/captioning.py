"""The captioning table's uncertainty: which of its numbers get a bootstrap interval by image
and a paired test, and the note that says how (and why BLEU and METEOR get none).

CIDEr-D, ROUGE-L and SPICE as pycocoevalcap computes them, and CLIP-S / RefCLIP-S, are the mean
of per-image scores, which the run's sidecar keeps under the record key (overall, and per image
group: ``cider_out_domain`` holds that domain's own per-image CIDEr-D). Resampling images and
taking the mean again is then the bootstrap of the very number the table shows; CIDEr-D's
document frequencies stay those of the scored corpus (re-deriving them per resample would
count a repeated image's references twice). The paired test between two models resamples the
same images for both (``leaderboard.stats.paired_sum_pvalue``).

BLEU is not such a mean (one brevity penalty over the corpus's summed n-gram counts): the
sidecar keeps each image's BLEU statistics, and a resample sums them and recomputes corpus BLEU
(:func:`harness.metrics.captioning.bleu_from_statistics`, equal to pycocoevalcap's to 1e-6), as
sacrebleu's paired bootstrap does. METEOR gets no interval: its corpus score aggregates
alignment statistics inside the METEOR jar, which the run does not keep.
"""

from __future__ import annotations

import html
import re

import numpy as np

from harness.metrics.captioning import (
    BLEU_STAT_COLUMNS,
    BLEU_STATS_KEY,
    PER_ITEM_MEAN,
    bleu_from_statistics,
    per_item_mean_metric,
)

__all__ = ["has_caption_interval", "caption_parts", "bleu_units", "group_columns", "table_note"]

NAMES = {"rouge_l": "ROUGE-L", "cider": "CIDEr-D", "spice": "SPICE", "clip_s": "CLIP-S", "refclip_s": "RefCLIP-S"}
NOTE = ("Intervals and the lead test by image ({n_boot} resamples). {means}: the mean of the per-image scores "
        "the run kept, which is the corpus score itself (CIDEr-D's document frequencies fixed at the scored "
        "corpus's). BLEU is not a mean of per-image scores (one brevity penalty over summed n-gram counts): "
        "each resample recomputes corpus BLEU from the images' summed statistics (candidate and closest "
        "reference lengths, n-gram and clipped match counts), as sacrebleu's paired bootstrap does. METEOR has "
        "none: its corpus score aggregates alignment statistics inside the METEOR jar that the run does not keep.")


BLEU_KEY = re.compile(r"bleu([1-4])(?:_([a-z0-9_]+))?")


def has_caption_interval(key: str) -> bool:
    """Whether a captioning record key gets an interval: a per-image mean, or BLEU (recomputed
    from resampled images' statistics).

    >>> has_caption_interval("cider"), has_caption_interval("spice_in_domain"), has_caption_interval("bleu4")
    (True, True, True)
    >>> has_caption_interval("meteor"), has_caption_interval("bleu4_lo")
    (False, False)
    """
    key = str(key)
    if key.endswith(("_lo", "_hi")):
        return False
    return per_item_mean_metric(key) is not None or BLEU_KEY.fullmatch(key) is not None


def bleu_units(queries: dict[str, np.ndarray] | None, key: str):
    """``(rows, statistic)`` for a BLEU key: each image's statistics (``bleu_stats``, or the
    group's ``bleu_stats_<group>``) and the corpus BLEU-n of a resample's summed rows; None
    when the sidecar lacks them.

    >>> rows, stat = bleu_units({"bleu_stats": np.array([[7, 7, 7, 5, 3, 1, 7, 3, 1, 0]])}, "bleu2")
    >>> stat(rows[None]).round(2).tolist()
    [77.46]
    """
    match = BLEU_KEY.fullmatch(str(key))
    if not queries or match is None:
        return None
    rows = queries.get(BLEU_STATS_KEY + (f"_{match.group(2)}" if match.group(2) else ""))
    if rows is None or rows.ndim != 2 or rows.shape[1] != len(BLEU_STAT_COLUMNS) or not rows.shape[0] \
            or not np.issubdtype(rows.dtype, np.integer):
        return None
    column = int(match.group(1)) - 1

    def statistic(samples: np.ndarray) -> np.ndarray:  # (b, n, 10) resampled rows -> (b,) BLEU-n
        return bleu_from_statistics(samples.sum(axis=-2))[..., column]

    return rows, statistic


def caption_parts(queries: dict[str, np.ndarray] | None, key: str) -> list[np.ndarray] | None:
    """The per-image scores whose mean is ``key``'s number, as one part; None when the sidecar
    lacks them (or ``key`` is not a per-image mean).

    >>> caption_parts({"cider": np.array([100.0, 50.0])}, "cider")[0].tolist()
    [100.0, 50.0]
    """
    if not queries or per_item_mean_metric(key) is None:
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
