"""open_clip CLIP towers as frozen encoders for fusion heads (image: ViT, text: transformer).

Both towers return features in the CLIP embedding width: the pooled output is CLIP's own
(class/EOT token, projected), the tokens are the final-layer tokens through the same
projection, so a fusion head sees one width for pooled and token features. Only towers of
open_clip's ``CLIP`` class (built-in text transformer) are covered here; transformers
(Hugging Face) towers are left to a later issue.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.core.errors import UserError
from harness.core.interfaces import LoadOptions


def _project(x, proj):
    if proj is None:
        return x
    return proj(x) if callable(proj) and not hasattr(proj, "ndim") else x @ proj


class OpenClipImageTower:
    """``pooled_and_grid(pixels)`` -> ((B, D), (B, patches, D)); frozen."""

    def __init__(self, clip):
        self.clip = clip
        self.model = clip.model.visual
        self.name = f"{clip.name}.image"
        self.dim = int(self.model.output_dim)
        self.checkpoint = clip.checkpoint
        self._size = self.model.image_size if isinstance(self.model.image_size, int) else self.model.image_size[0]

    def image_transform(self, size: int | None = None, crop: bool = True):
        if size not in (None, self._size):
            raise UserError(f"{self.name}: a ViT with fixed positions takes {self._size} px images, not {size}")
        return self.clip.image_transform()

    def pooled_and_grid(self, pixels):
        import torch

        v = self.model
        with torch.no_grad():
            x = v.transformer(v._embeds(pixels.to(next(v.parameters()).device)))
            pooled, tokens = v._pool(x)
        return _project(pooled, v.proj).float(), _project(tokens, v.proj).float()


class OpenClipTextTower:
    """``pooled_and_tokens(texts, max_tokens)`` -> ((B, D) unit-norm, (B, T, D), (B, T) mask)."""

    def __init__(self, clip):
        self.clip = clip
        self.model = clip.model
        self.name = f"{clip.name}.text"
        self.dim = int(clip.embed_dim)
        self.checkpoint = clip.checkpoint

    def pooled_and_tokens(self, texts: Sequence[str], max_tokens: int):
        import torch
        import torch.nn.functional as F
        from open_clip.transformer import text_global_pool

        m = self.model
        ids = self.clip.tokenize(list(texts)).to(m.positional_embedding.device)
        with torch.no_grad():
            x = m.token_embedding(ids) + m.positional_embedding
            x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask))
            pooled = text_global_pool(x, ids, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
            pooled, tokens = _project(pooled, m.text_projection), _project(x, m.text_projection)
        mask = ids != 0
        tokens, mask = tokens[:, :max_tokens], mask[:, :max_tokens]
        if tokens.shape[1] < max_tokens:  # fixed width, so features of different batches stack
            pad = max_tokens - tokens.shape[1]
            tokens, mask = F.pad(tokens, (0, 0, 0, pad)), F.pad(mask, (0, pad))
        return F.normalize(pooled.float(), dim=-1), tokens.float(), mask


def load_tiny_clip_tower(modality: str, stem: str, random_init: bool, options: LoadOptions | None = None):
    from harness.models.clip import load_tiny_clip

    options = options or LoadOptions()
    name = stem.replace("-synth", "-random") if random_init else stem
    clip = load_tiny_clip(name, stem, options, random_init=random_init)
    clip.model.requires_grad_(False).eval()
    return OpenClipImageTower(clip) if modality == "image" else OpenClipTextTower(clip)
