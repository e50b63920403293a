"""Encoding loops shared by the tasks: batched, measured, data decoded in worker processes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from harness.datasets.base import ImageSet
from harness.measure import Stage


@dataclass(frozen=True)
class EncodeOptions:
    batch_size: int = 64
    device: str = "cpu"
    num_workers: int = 0
    warmup_batches: int = 1


class _Pixels:
    """Map-style dataset: index -> preprocessed image tensor (runs inside loader workers)."""

    def __init__(self, images: ImageSet, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images.load(i))


def encode_images(model, images: ImageSet, opts: EncodeOptions, stage: Stage):
    """(N, D) float32 embeddings on the model's device, in dataset order."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _Pixels(images, model.image_transform()),
        batch_size=opts.batch_size,
        shuffle=False,
        num_workers=opts.num_workers,
        pin_memory=str(opts.device).startswith("cuda"),
        persistent_workers=False,
    )
    chunks = []
    for pixels in loader:
        with stage.batch(len(pixels)):
            chunks.append(model.encode_images(pixels))
    return torch.cat(chunks) if chunks else torch.empty(0, model.embed_dim)


def encode_texts(model, texts: Sequence[str], opts: EncodeOptions, stage: Stage):
    """(M, D) float32 embeddings; tokenisation counts as part of the text stage."""
    import torch

    chunks = []
    for start in range(0, len(texts), opts.batch_size):
        batch = texts[start:start + opts.batch_size]
        with stage.batch(len(batch)):
            chunks.append(model.encode_texts(model.tokenize(batch)))
    return torch.cat(chunks) if chunks else torch.empty(0, model.embed_dim)
