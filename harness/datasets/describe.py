"""``vlbench data describe``: what a split holds, what was dropped and why, and whether the
split can be used. Loading already applies the cheap image-file check (signature and
end marker, see :mod:`harness.datasets.images`); ``decode=True`` also decodes every image."""

from __future__ import annotations

import warnings
from typing import Any

from harness.datasets.base import (
    DERIVED_VIEWS,
    DatasetError,
    DatasetRequest,
    RetrievalData,
)
from harness.datasets.meta import DatasetMeta
from harness.datasets.pair_labels import ImageTextLabelData
from harness.datasets.views import JudgmentData

_REPORTED = ("dropped", "bad_", "count_mismatch", "sha256_mismatch", "images_in_no_split", "ignored_files",
             "n_classes_without_images", "conflicting",
             "fallback_decoded", "split_rule", "ignored_genres", "unseen", "pair_mode", "item_kinds", "empty_texts",
             "annotators")


def undecodable(images, limit: int = 5) -> tuple[int, list[str]]:
    """Decode every image; count those that fail (examples name the file and the reason)."""
    from harness.core import progress
    from harness.datasets.images import ImageDecodeError

    count, examples = 0, []
    for i in progress.track(range(len(images)), "decode", unit="img"):
        try:
            images.load(i)
        except ImageDecodeError as exc:
            count += 1
            if len(examples) < limit:
                examples.append(exc.reason)
    return count, examples


def describe(meta: DatasetMeta, split: str, data_root: str | None, strict: bool = False,
             decode: bool = False) -> dict[str, Any]:
    report: dict[str, Any] = {"dataset": meta.name, "split": split, "source": meta.source, "license": meta.license}
    for task in meta.tasks:
        if task in DERIVED_VIEWS:  # e.g. a linear probe: another view (zeroshot) of this and the train split
            continue
        prefix = task.value
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                data = meta.load(DatasetRequest(split=split, task=task, data_root=data_root, strict=strict))
            except DatasetError as exc:
                report.update(usable=False, error=str(exc))
                return report
        report[f"{prefix}.images"] = len(data.images)
        if isinstance(data, RetrievalData):
            report[f"{prefix}.captions"] = len(data.captions)
        elif hasattr(data, "items"):  # caption selection
            report[f"{prefix}.items"] = len(data.items)
            report[f"{prefix}.groups"] = sum(it.is_group for it in data.items)
        elif isinstance(data, ImageTextLabelData):  # image + text -> label: items, classes, per-class counts
            report.update({f"{prefix}.{k}": v for k, v in data.counts().items()})
            report[f"{prefix}.kind"] = data.kind
            report[f"{prefix}.class_counts"] = ", ".join(
                f"{name}={n}" for name, n in zip(data.classnames[:30], data.class_counts()))
        elif isinstance(data, JudgmentData):  # human judgments: judged pairs and rows
            report.update({f"{prefix}.{k}": v for k, v in data.counts().items()})
        else:
            report[f"{prefix}.classes"] = len(data.classnames)
            report[f"{prefix}.templates"] = len(data.templates)
            report[f"{prefix}.labels_used"] = len(set(data.labels))
        for key, value in data.info.items():
            if key.startswith(_REPORTED) and value:
                report[f"{prefix}.{key}"] = value
        for i, w in enumerate(caught):
            report[f"{prefix}.warning[{i}]"] = str(w.message)
        report[f"{prefix}.fingerprint"] = data.fingerprint
        if decode:
            bad, examples = undecodable(data.images)
            if getattr(data, "images_right", None) is not None:  # NLVR2: the right image of each pair too
                more, more_examples = undecodable(data.images_right)
                bad, examples = bad + more, examples + more_examples
            report[f"{prefix}.undecodable_images"] = f"{bad}" + (f" ({'; '.join(examples)})" if examples else "")
            if bad:
                report.update(usable=False, error=f"{bad} image file(s) cannot be decoded")
                return report
    report["usable"] = True
    return report
