"""The names shared by runs, records, per-query sidecars and the leaderboard (no torch here).

``MetricKey`` names the numbers in ``record.metrics``; ``QueryKey`` names the per-query
outcomes in a record's ``.queries.json`` sidecar (``harness.results.store.save``), from which the
leaderboard bootstraps intervals without re-running a model. Hard-negative accuracies are a
family of keys (``hn_colour``, ``hn_binding``, ...): their record key and their sidecar key
are the same string, see :func:`hard_negative_key`.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["MetricKey", "QueryKey", "CaptionKey", "HARD_NEGATIVE_PREFIX", "hard_negative_key", "is_hard_negative_key",
           "is_caption_selection_key", "AgreementKey", "KENDALL_KEYS"]


class _Named(str, Enum):
    """A key enum whose str() is its value (Python 3.11 changed str() of mixin enums)."""

    def __str__(self) -> str:
        return self.value


class MetricKey(_Named):
    """Metric keys of result records; the value is the exact string stored.

    >>> MetricKey.T2I_R1.value, str(MetricKey.RSUM), MetricKey("acc5") is MetricKey.ACC5
    ('t2i_R@1', 'rsum', True)
    """

    T2I_R1 = "t2i_R@1"
    T2I_R5 = "t2i_R@5"
    T2I_R10 = "t2i_R@10"
    I2T_R1 = "i2t_R@1"
    I2T_R5 = "i2t_R@5"
    I2T_R10 = "i2t_R@10"
    RSUM = "rsum"
    MEAN_R1 = "mean_R@1"  # (t2i_R@1 + i2t_R@1) / 2: DataComp's retrieval score
    T2I_MEDR = "t2i_medr"
    I2T_MEDR = "i2t_medr"
    T2I_MEANR = "t2i_meanr"
    I2T_MEANR = "i2t_meanr"
    ACC1 = "acc1"
    ACC5 = "acc5"
    MACRO_F1 = "macro_f1"
    BALANCED_ACC = "balanced_acc"


class QueryKey(_Named):
    """Keys of the per-query sidecar (beside ``run_key``); values are JSON lists, one entry per
    query. Retrieval: 1-based first-hit ranks per caption (t2i) and per captioned image (i2t);
    zero-shot: top-1 hit, top-1 predicted class and true class per image (``label`` since the
    sidecars of macro-F1 intervals; older sidecars lack it). Hard negatives: see
    :func:`hard_negative_key`.

    >>> QueryKey.LABEL.value, str(QueryKey.T2I_RANK)
    ('label', 't2i_rank')
    """

    T2I_RANK = "t2i_rank"
    I2T_RANK = "i2t_rank"
    CORRECT = "correct"
    PRED = "pred"
    LABEL = "label"
    # caption selection, one entry per selection item: right (0/1), subset index, category index
    # (-1: none); then the names those indices point at and the dataset's SelectionSpec (a
    # one-element list). Winoground groups keep text_score / image_score / group_score (0/1 each).
    CS_CORRECT = "cs_correct"
    CS_SUBSET = "cs_subset"
    CS_CATEGORY = "cs_category"
    CS_SUBSETS = "cs_subsets"
    CS_CATEGORIES = "cs_categories"
    CS_SPEC = "cs_spec"
    # human_agreement, one entry per judgment row: the model's score of the judged pair, the
    # human score, and the query image (the bootstrap resamples images, not rows)
    SCORE = "score"
    HUMAN = "human"
    GROUP = "group"


class CaptionKey(_Named):
    """Caption-selection record keys: ``acc`` (main, the macro mean of the subsets) and
    Winoground's three scores (Thrush et al. 2022); per-subset accuracies are a family of keys,
    ``acc_<subset>`` (:func:`is_caption_selection_key`, ``harness.metrics.selection.subset_key``).

    >>> CaptionKey.GROUP_SCORE.value, str(CaptionKey.ACC)
    ('group_score', 'acc')
    """

    ACC = "acc"
    TEXT_SCORE = "text_score"
    IMAGE_SCORE = "image_score"
    GROUP_SCORE = "group_score"


HARD_NEGATIVE_PREFIX = "hn_"


def hard_negative_key(kind: str) -> str:
    """Record and sidecar key of a swap kind's pairwise accuracy (``binding``: colour + shape).

    In the sidecar, the key holds ``[wins, checks]`` per independent group of comparisons
    (``harness.tasks.hard_negatives.comparison_groups``).

    >>> hard_negative_key("colour_swap"), hard_negative_key("binding")
    ('hn_colour', 'hn_binding')
    """
    return f"{HARD_NEGATIVE_PREFIX}{kind.removesuffix('_swap')}"


def is_hard_negative_key(key: str) -> bool:
    """True for a hard-negative accuracy key.

    >>> is_hard_negative_key("hn_relation"), is_hard_negative_key("rsum")
    (True, False)
    """
    return str(key).startswith(HARD_NEGATIVE_PREFIX) and len(str(key)) > len(HARD_NEGATIVE_PREFIX)


CAPTION_SELECTION_KEYS = tuple(k.value for k in CaptionKey)


def is_caption_selection_key(key: str) -> bool:
    """True for ``acc``, ``acc_<subset>`` (``_macro`` / ``_micro`` variants too) and the Winoground scores.

    >>> is_caption_selection_key("acc_swap_att"), is_caption_selection_key("group_score"), is_caption_selection_key("acc1")
    (True, True, False)
    """
    key = str(key)
    return key in CAPTION_SELECTION_KEYS or (key.startswith("acc_") and len(key) > 4 and not key.endswith(("_lo", "_hi")))
# Kendall variant -> the record key it is reported under
class AgreementKey(_Named):
    """human_agreement record keys: Kendall tau x 100 of model scores against human judgments
    (CLIPScore's protocol, Hessel et al. 2021): tau-c on Flickr8k-Expert, tau-b on Flickr8k-CF."""

    KENDALL_TAU_C = "kendall_tau_c"
    KENDALL_TAU_B = "kendall_tau_b"


KENDALL_KEYS = {"b": AgreementKey.KENDALL_TAU_B.value, "c": AgreementKey.KENDALL_TAU_C.value}
