"""After a load: compare what came out with what the manifest says a standard split holds."""

from __future__ import annotations

from .assemble import skip
from .base import ClassificationData, DatasetRequest, RetrievalData, TaskKind
from .pair_labels import ImageTextLabelData
from .views import JudgmentData


def expected_counts(spec, split: str, task: TaskKind) -> dict[str, int]:
    """The manifest's expected counts for one view of a split (empty when it gives none)."""
    s = spec.splits.get(split)
    if s is None:
        return {}
    if task is TaskKind.RETRIEVAL:
        want = {"images": s.images, "captions": s.captions}
    elif task is TaskKind.CAPTION_SELECTION:
        want = {"items": s.items}
    elif task is TaskKind.IMAGE_TEXT_CLASSIFICATION:
        want = {"items": s.items}
    elif task is TaskKind.HUMAN_AGREEMENT:
        want = {"images": s.images, "pairs": s.pairs, "rows": s.rows}
    else:
        only_view = TaskKind.RETRIEVAL not in spec.tasks
        want = {"images": s.classification_images if s.classification_images is not None
                else (s.images if only_view else None)}
    return {k: v for k, v in want.items() if v is not None}


def check_against_manifest(spec, data: RetrievalData | ClassificationData | JudgmentData,
                           request: DatasetRequest) -> None:
    """Annotation files whose sha256 differs from the manifest's, and full splits whose counts
    differ, get one warning each (errors under ``--strict``); results are flagged in info."""
    shas = data.info.get("sha256") or {}
    for fname, want in spec.annotation_sha256.items():
        got = shas.get(fname)
        if got is not None and got != want:
            data.info.setdefault("sha256_mismatch", []).append(fname)
            skip(f"{spec.name}: {fname} differs from the release the manifest pins (sha256 {got[:12]}..., "
                 f"expected {want[:12]}...); scores may not be comparable", request.strict)
    if "subset" in data.info:
        return
    task = TaskKind.RETRIEVAL if isinstance(data, RetrievalData) else TaskKind.ZEROSHOT
    got = {"images": len(data.images)}
    if isinstance(data, RetrievalData):
        got["captions"] = len(data.captions)
    if hasattr(data, "items"):  # caption selection: its size is its items
        task, got = TaskKind.CAPTION_SELECTION, {"items": len(data.items)}
    elif isinstance(data, ImageTextLabelData):  # image + text -> label: its size is its items
        task, got = TaskKind.IMAGE_TEXT_CLASSIFICATION, {"items": len(data.texts)}
    elif isinstance(data, JudgmentData):
        task = TaskKind.HUMAN_AGREEMENT
        got.update(data.counts())
    diffs = [f"{got[k]} {k} (expected {v})" for k, v in expected_counts(spec, data.split, task).items()
             if got.get(k) != v]
    if diffs:
        data.info["count_mismatch"] = diffs
        skip(f"{spec.name}/{data.split}: loaded {', '.join(diffs)} per datasets_manifest.yaml", request.strict)
