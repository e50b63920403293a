"""Joint (image, text) features of a cross-encoder, through the embedding cache, with the two
input-blanked ablations computed in the same pass.

A cross-encoder (ViLT, BLIP ITM, the early and cross-attention fusion heads) has no unimodal
embedding to probe, so its modality ablation blanks one input (Frank, Bugliarello & Elliott,
"Vision-and-Language or Vision-for-Language? On Cross-Modal Influence in Multimodal
Transformers", EMNLP 2021, ablate cross-encoders by masking an input the same way):

* image only: the joint features of (image, the empty text);
* text only: the joint features of (a uniform grey image at the ImageNet mean colour, text).

Each item's three vectors are stored as one cached row ``(3, D)``: fused, image only, text only.
A model that also splits its work into ``image_features`` / ``text_features`` and offers
``joint_from_features`` runs each tower once per batch and the blank inputs once per run.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.core.measure import Stage
from harness.datasets.base import ImageSet
from harness.parallel import shard_plan
from harness.tasks.encode import Backoff, EncodeOptions, _entry, _fill, _finish, _image_identity, _plan

BLANK_RGB = (124, 116, 104)  # the ImageNet mean colour: ~0 after the usual normalisation
BLANK_TEXT = ""
ABLATION_NOTE = ("input blanking: image-only = joint features of (image, empty text); text-only = joint features "
                 f"of (uniform RGB{BLANK_RGB} image, text)")
VARIANTS = ("fused", "image_only", "text_only")


class _PairBatch:
    """A batch of (pixels, texts) that slices like one tensor (for the OOM backoff)."""

    def __init__(self, pixels, texts: list[str]):
        self.pixels, self.texts = pixels, texts

    def __getitem__(self, part: slice) -> _PairBatch:
        return _PairBatch(self.pixels[part], self.texts[part])


class _Items:
    def __init__(self, images: ImageSet, texts: Sequence[str], transform):
        self.images, self.texts, self.transform = images, texts, transform

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int):
        return self.transform(self.images.load(i)), self.texts[i]


def _broadcast(feats, n: int):
    if isinstance(feats, dict):
        return {k: _broadcast(v, n) for k, v in feats.items()}
    return feats.expand(n, *feats.shape[1:])


class _JointFn:
    """Batch -> (B, 3, D): fused, image only, text only."""

    def __init__(self, model):
        import torch
        from PIL import Image

        self.model = model
        self.blank = model.image_transform()(Image.new("RGB", (224, 224), BLANK_RGB)).unsqueeze(0)
        self.factored = all(hasattr(model, a) for a in ("image_features", "text_features", "joint_from_features"))
        self._blank_feats = None
        self._torch = torch

    def __call__(self, batch: _PairBatch):
        n, m = len(batch.texts), self.model
        empty = [BLANK_TEXT] * n
        if self.factored:
            if self._blank_feats is None:
                self._blank_feats = (m.image_features(self.blank), m.text_features([BLANK_TEXT]))
            img, txt = m.image_features(batch.pixels), m.text_features(batch.texts)
            blank_img, blank_txt = (_broadcast(f, n) for f in self._blank_feats)
            out = [m.joint_from_features(img, txt), m.joint_from_features(img, blank_txt),
                   m.joint_from_features(blank_img, txt)]
        else:
            blank = self.blank.expand(n, *self.blank.shape[1:])
            out = [m.joint_features(batch.pixels, batch.texts), m.joint_features(batch.pixels, empty),
                   m.joint_features(blank, batch.texts)]
        return self._torch.stack([o.float() for o in out], dim=1)


def encode_joint(model, images: ImageSet, texts: Sequence[str], opts: EncodeOptions, stage: Stage):
    """(N, 3, D) float32 on the model's device: per item, the fused joint features and the two
    blanked ablations (:data:`VARIANTS` order), cached like the encode loops' embeddings."""
    from torch.utils.data import DataLoader

    from harness.results.cache import texts_digest

    texts = list(texts)
    stored = opts.cache is not None and opts.cache.root is not None
    ident = {"texts": len(texts), "text_digest": texts_digest(texts), "ablation": ABLATION_NOTE,
             **(_image_identity(model, images, opts.cache.digest_dir) if stored else {})}
    entry = _entry(opts, "joint", ident, len(texts))
    backoff = Backoff(opts.batch_size, opts.device)
    ranges = shard_plan.my_ranges(entry)
    plan = _plan(ranges, opts.batch_size)
    if plan:
        loader = DataLoader(_Items(images, texts, model.image_transform()),
                            batch_sampler=[b for chunk in plan for b in chunk], num_workers=opts.num_workers,
                            pin_memory=str(opts.device).startswith("cuda"),
                            prefetch_factor=2 if opts.num_workers else None)
        batches = ((_PairBatch(px, list(tx)), len(tx)) for px, tx in loader)
        _fill(entry, ranges, plan, batches, _JointFn(model), backoff, stage)
    shard_plan.exchange(entry)
    return _finish(entry, stage, backoff, opts.device, 0, ranges)
