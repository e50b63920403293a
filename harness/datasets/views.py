"""Dataset views beyond retrieval and classification: human judgments of (image, caption)
pairs, and the train + evaluation pair of classification views a linear probe needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import ClassificationData, DatasetError, ImageSet, fingerprint, subset_indices


@dataclass
class JudgmentData:
    """Query images, candidate captions, the judged (image, caption) pairs and one row per
    human judgment: ``row_pair[r]`` is the pair row ``r`` rates, ``human[r]`` its score.
    Flickr8k-Expert has 3 rows per pair (one per expert), Flickr8k-CF one (fraction of yes).
    ``variant`` is the Kendall tau its benchmark reports ("b" or "c").

    ``references[i]`` are query image i's own captions (what reference-based caption metrics
    score a candidate against) and ``pair_own_ref[p]`` the index among them of pair p's
    candidate when it is one of them (-1 if not): such a pair is scored against the others.
    Both are empty for sources without reference captions."""

    name: str
    split: str
    images: ImageSet
    captions: list[str]
    pair_image: list[int]
    pair_caption: list[int]
    row_pair: list[int]
    human: list[float]
    variant: str
    fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)
    references: list[list[str]] = field(default_factory=list)
    pair_own_ref: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        where = f"{self.name}/{self.split}"
        if self.references and (len(self.references) != len(self.images) or len(self.pair_own_ref) != len(self.pair_image)):
            raise DatasetError(f"{where}: reference captions do not line up with the images or pairs")
        if len(self.pair_image) != len(self.pair_caption) or len(self.row_pair) != len(self.human):
            raise DatasetError(f"{where}: pair or row columns differ in length")
        if any(not 0 <= i < len(self.images) for i in self.pair_image):
            raise DatasetError(f"{where}: a pair points at a missing image")
        if any(not 0 <= c < len(self.captions) for c in self.pair_caption):
            raise DatasetError(f"{where}: a pair points at a missing caption")
        if any(not 0 <= p < len(self.pair_image) for p in self.row_pair):
            raise DatasetError(f"{where}: a judgment points at a missing pair")
        if self.variant not in ("b", "c"):
            raise DatasetError(f"{where}: Kendall tau variant must be 'b' or 'c', got {self.variant!r}")

    def counts(self) -> dict[str, int]:
        return {"captions": len(self.captions), "pairs": len(self.pair_image), "rows": len(self.human)}

    def restrict(self, keep_images: Sequence[int]) -> JudgmentData:
        """Only the judgments of the given query images (captions they use, re-indexed)."""
        img = {old: new for new, old in enumerate(keep_images)}
        pairs = [p for p, i in enumerate(self.pair_image) if i in img]
        caps = sorted({self.pair_caption[p] for p in pairs})
        cap, pair = {old: new for new, old in enumerate(caps)}, {old: new for new, old in enumerate(pairs)}
        rows = [r for r, p in enumerate(self.row_pair) if p in pair]
        return JudgmentData(
            name=self.name, split=self.split, images=self.images.subset(keep_images),
            captions=[self.captions[c] for c in caps], pair_image=[img[self.pair_image[p]] for p in pairs],
            pair_caption=[cap[self.pair_caption[p]] for p in pairs], row_pair=[pair[self.row_pair[r]] for r in rows],
            human=[self.human[r] for r in rows], variant=self.variant,
            fingerprint=fingerprint(self.fingerprint, list(keep_images)), info=dict(self.info),
            references=[self.references[i] for i in keep_images] if self.references else [],
            pair_own_ref=[self.pair_own_ref[p] for p in pairs] if self.references else [])


def limit_judgments(data: JudgmentData, limit: int | None, seed: int) -> JudgmentData:
    """A seeded subset of ``limit`` query images (all their judgments), recorded in
    ``info["subset"]`` as :func:`harness.datasets.base.apply_limit` does."""
    if limit is None:
        return data
    keep = subset_indices(len(data.images), limit, seed)
    if len(keep) < len(data.images):
        data = data.restrict(keep)
    data.info["subset"] = {"limit": limit, "seed": seed}
    return data


class _FitAndEval:
    """A split a model is fitted on and the split it is evaluated on, read by the runner as the
    evaluation split (name, split, images) with both splits in the fingerprint."""

    train: Any
    eval: Any

    @property
    def name(self) -> str:
        return self.eval.name

    @property
    def split(self) -> str:
        return self.eval.split

    @property
    def images(self) -> ImageSet:
        return self.eval.images

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.train.fingerprint, self.eval.fingerprint)


@dataclass
class ProbeData(_FitAndEval):
    """A linear probe's data: the classification view of a train split (the probe is fitted
    there, its L2 strength chosen on a held-out part of it) and of the evaluation split."""

    train: ClassificationData
    eval: ClassificationData

    def __post_init__(self) -> None:
        if self.train.split == self.eval.split:
            raise DatasetError(f"{self.eval.name}: a linear probe is never fitted on the split it is evaluated on "
                               f"({self.eval.split!r}); evaluate on another split")
        if list(self.train.classnames) != list(self.eval.classnames):
            raise DatasetError(f"{self.eval.name}: the {self.train.split} and {self.eval.split} splits have "
                               "different classes")

    @property
    def info(self) -> dict[str, Any]:
        return {**self.eval.info, "train": {"split": self.train.split, "images": len(self.train.images),
                                            "fingerprint": self.train.fingerprint}}

    def counts(self) -> dict[str, int]:
        return {"classes": len(self.eval.classnames), "train_images": len(self.train.images)}


@dataclass
class ImageTextProbeData(_FitAndEval):
    """The image + text -> label view of a train split (a classifier is fitted there, its
    settings chosen on a held-out part of it) and of the evaluation split, for
    ``image_text_classification``. What the runner reads (name, split, images, fingerprint,
    info, counts) is the evaluation split's, with the train split named in ``info`` and its
    images digested into the run key through ``train``, as for :class:`ProbeData`."""

    train: Any  # harness.datasets.pair_labels.ImageTextLabelData
    eval: Any

    def __post_init__(self) -> None:
        if self.train.split == self.eval.split:
            raise DatasetError(f"{self.eval.name}: a classifier is never fitted on the split it is evaluated on "
                               f"({self.eval.split!r}); evaluate on another split")
        if list(self.train.classnames) != list(self.eval.classnames) or self.train.multilabel != self.eval.multilabel:
            raise DatasetError(f"{self.eval.name}: the {self.train.split} and {self.eval.split} splits have "
                               "different classes")
        if self.train.is_pair != self.eval.is_pair:
            raise DatasetError(f"{self.eval.name}: one of the {self.train.split} and {self.eval.split} splits has "
                               "image pairs and the other single images")

    @property
    def images(self) -> ImageSet:
        """The evaluation split's images, the right images of a pair dataset after the left
        ones, so the run key's image digest covers both."""
        return self.eval.all_images

    @property
    def info(self) -> dict[str, Any]:
        return {**self.eval.info, "train": {"split": self.train.split, "items": len(self.train),
                                            "fingerprint": self.train.fingerprint}}

    def counts(self) -> dict[str, int]:
        out = {k: v for k, v in self.eval.counts().items() if k != "images"}  # the record has images
        out.update(train_items=len(self.train), train_images=len(self.train.images))
        return out
