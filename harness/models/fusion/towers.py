"""The frozen image + text towers under a fusion head, and their features for a whole split.

Features are dicts of tensors with first dim = items:
  image: ``pooled`` (B, Di) and ``grid`` (B, G, Di) tokens of the last feature map;
  text:  ``pooled`` (B, Dt), ``tokens`` (B, T, Dt) and ``mask`` (B, T), T fixed by the spec
         so features of different batches stack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from harness.core.interfaces import LoadOptions


@dataclass(frozen=True)
class TowerSpec:
    """Which frozen towers, and how images/texts are prepared for them (part of a checkpoint)."""

    image_encoder: str = "efficientnet-lite0"
    text_encoder: str = "minilm-l6-v2"
    image_size: int = 224
    crop: bool = True          # TF eval crop; False resizes the whole image (content at borders)
    text_max_tokens: int = 32  # covers 99.9% of Flickr8k captions (longest 42 MiniLM tokens)

    def to_dict(self) -> dict:
        return asdict(self)


class FrozenTowers:
    """Runs the two frozen towers once per image / per text; no gradients, eval mode."""

    def __init__(self, spec: TowerSpec, image_tower, text_tower, device: str = "cpu"):
        self.spec, self.image_tower, self.text_tower, self.device = spec, image_tower, text_tower, device
        self.image_dim, self.text_dim = int(image_tower.dim), int(text_tower.dim)

    @property
    def checkpoint(self) -> dict:
        return {"image": self.image_tower.checkpoint, "text": self.text_tower.checkpoint}

    def image_transform(self):
        return self.image_tower.image_transform(self.spec.image_size, self.spec.crop)

    def image_features(self, pixels) -> dict:
        import torch

        with torch.no_grad():
            pooled, grid = self.image_tower.pooled_and_grid(pixels.to(self.device))
        return {"pooled": pooled.float(), "grid": grid.float()}

    def text_features(self, texts: Sequence[str]) -> dict:
        import torch

        with torch.no_grad():
            pooled, tokens, mask = self.text_tower.pooled_and_tokens(list(texts), self.spec.text_max_tokens)
        return {"pooled": pooled.float(), "tokens": tokens.float(), "mask": mask.bool()}


def load_towers(spec: TowerSpec, options: LoadOptions | None = None) -> FrozenTowers:
    from harness.models.encoders import ENCODERS

    options = options or LoadOptions()
    tower_options = LoadOptions(device=options.device, precision=options.precision)  # --weights is the head's
    img, txt = ENCODERS.get(spec.image_encoder), ENCODERS.get(spec.text_encoder)
    if img.modality != "image" or txt.modality != "text":
        raise ValueError(f"towers {spec.image_encoder!r}/{spec.text_encoder!r}: need an image and a text encoder")
    return FrozenTowers(spec, img.load(tower_options), txt.load(tower_options), options.device)


# The two tower setups of the shipped fusion models. Synthetic scenes are 64x64 with objects
# up to the border: resized whole (no crop) to 128 px, EfficientNet's stride 32 gives a 4x4
# grid whose cells cover 16 source pixels (about one object), at a third of the cost of 224.
# Their captions are at most 15 MiniLM tokens.
SYNTHETIC_TOWERS = TowerSpec(image_size=128, crop=False, text_max_tokens=16)
FLICKR_TOWERS = TowerSpec(image_size=224, crop=True, text_max_tokens=32)
