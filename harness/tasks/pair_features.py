"""Frozen features of image + text items for ``image_text_classification``: per item a fused
vector and the two single-modality vectors its ablation probes read.

* Dual encoders (CLIP, SigLIP, late fusion, BLIP's ITC): the L2-normalised image embedding u
  and text embedding v, through the embedding cache (each split keyed as a zero-shot or
  linear-probe run keys it; an image that several items share is encoded once). Heads:
  ``concat`` = [u; v]; ``interact`` = [u; v; u*v; |u-v|] (the default: a linear probe on
  ``concat`` is additive and cannot tell whether a text matches its image). Ablations: u
  alone, v alone.
* Cross-encoders (:class:`~harness.core.interfaces.JointEncoder`): the joint vector their match
  head reads, fused; ablations blank one input (:mod:`harness.tasks.joint_encode`).
* Two images per item (NLVR2): each image is embedded and the image part is [u_left; u_right]
  (``interact`` adds u_left*v, |u_left-v|, u_right*v, |u_right-v|); a cross-encoder reads
  (left, text) and (right, text) and their joint vectors are concatenated.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.errors import UserError
from harness.core.measure import Stage
from harness.tasks.encode import EncodeOptions, encode_images, encode_texts

HEADS = ("interact", "concat")
PAIR_MODE = {
    "embeddings": "two images per item: the image part is [u_left; u_right]; interact adds u_left*v, |u_left-v|, "
                  "u_right*v, |u_right-v|",
    "joint": "two images per item: joint features of (left, text) and (right, text), concatenated",
}


@dataclass
class SplitFeatures:
    """(N, D) float tensors of one split: fused, image only, text only."""

    fused: object
    image_only: object
    text_only: object

    def variant(self, name: str):
        return {"fused": self.fused, "image_only": self.image_only, "text_only": self.text_only}[name]


def fuse(u_parts: list, v, head: str):
    """The fused vector of image embedding(s) ``u_parts`` and text embedding ``v``.

    >>> import torch
    >>> u, v = torch.tensor([[1., 0.]]), torch.tensor([[0.6, 0.8]])
    >>> fuse([u], v, "interact").tolist()
    [[1.0, 0.0, 0.6000000238418579, 0.800000011920929, 0.6000000238418579, 0.0, 0.3999999761581421, 0.800000011920929]]
    """
    import torch

    if head not in HEADS:
        raise ValueError(f"head {head!r}: expected one of {HEADS}")
    parts = [*u_parts, v]
    if head == "interact":
        for u in u_parts:
            parts += [u * v, (u - v).abs()]
    return torch.cat(parts, dim=1)


def _unique_images(images) -> tuple:
    """(the distinct images, in first-seen order; each item's position among them).

    >>> from pathlib import Path
    >>> from harness.datasets.images import ImageSet
    >>> distinct, index = _unique_images(ImageSet([Path("a"), Path("b"), Path("a")]))
    >>> [p.name for p in distinct.paths], index
    (['a', 'b'], [0, 1, 0])
    """
    position: dict = {}
    rows, index = [], []
    for i, p in enumerate(images.paths):
        if p not in position:
            position[p] = len(rows)
            rows.append(i)
        index.append(position[p])
    return images.subset(rows), index


def _image_embeddings(model, images, opts: EncodeOptions, stage: Stage):
    import torch

    distinct, index = _unique_images(images)
    emb = encode_images(model, distinct, opts, stage)
    return emb[torch.as_tensor(index, device=emb.device)]


def dual_features(model, data, opts: EncodeOptions, head: str, prefix: str = "") -> tuple[SplitFeatures, dict]:
    """Embeddings of one split (ImageTextLabelData) -> features, timings by stage name."""
    with Stage(f"{prefix}image_encode", opts.device, opts.warmup_batches) as img_stage:
        u_parts = [_image_embeddings(model, data.images, opts, img_stage)]
        if data.images_right is not None:
            u_parts.append(_image_embeddings(model, data.images_right, opts, img_stage))
    with Stage(f"{prefix}text_encode", opts.device, opts.warmup_batches) as txt_stage:
        v = encode_texts(model, data.texts, opts, txt_stage)
    import torch

    feats = SplitFeatures(fuse(u_parts, v, head), torch.cat(u_parts, dim=1), v)
    return feats, {s.name: s.timing() for s in (img_stage, txt_stage)}


def joint_features(model, data, opts: EncodeOptions, prefix: str = "") -> tuple[SplitFeatures, dict]:
    import torch

    from harness.core.interfaces import JointEncoder
    from harness.tasks.joint_encode import encode_joint

    if not isinstance(model, JointEncoder):
        raise UserError(f"{getattr(model, 'name', model)!r} offers no joint (image, text) features "
                        "(JointEncoder.joint_features), so image_text_classification cannot probe it")
    with Stage(f"{prefix}pair_encode", opts.device, opts.warmup_batches) as stage:
        parts = [encode_joint(model, data.images, data.texts, opts, stage)]
        if data.images_right is not None:
            parts.append(encode_joint(model, data.images_right, data.texts, opts, stage))
    j = torch.cat(parts, dim=2)  # (N, 3, D * images per item)
    return SplitFeatures(j[:, 0], j[:, 1], j[:, 2]), {stage.name: stage.timing()}
