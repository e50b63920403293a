"""Fake models shared by tests: fixed tables instead of networks, so expected numbers can be
worked out by hand. An "image" is its own index (``id_pixels``), a caption "c<k>" is caption k."""

from __future__ import annotations

import torch


def id_pixels(i):  # module level: picklable for loader workers
    return torch.tensor([float(i)])


class TableDual:
    """A DualEncoder whose embeddings are rows of fixed tables: image i -> ``img[i]``, caption
    "c<k>" -> ``txt[k]``."""

    name = "table-dual"

    def __init__(self, img, txt):
        self.img, self.txt = img, txt
        self.embed_dim = int(img.shape[1])

    @classmethod
    def random(cls, n_images: int, n_captions: int, seed: int = 1, dim: int = 16) -> TableDual:
        """Seeded unit-norm tables."""
        g = torch.Generator().manual_seed(seed)
        img = torch.nn.functional.normalize(torch.randn(n_images, dim, generator=g), dim=1)
        txt = torch.nn.functional.normalize(torch.randn(n_captions, dim, generator=g), dim=1)
        return cls(img, txt)

    def image_transform(self):
        return id_pixels

    def tokenize(self, texts):
        return torch.tensor([int(t[1:]) for t in texts])

    def encode_images(self, pixels):
        return self.img[pixels[:, 0].long()]

    def encode_texts(self, tokens):
        return self.txt[tokens]
