"""Trainable fusion heads over frozen-tower features (torch.nn; import only when needed).

Every head splits its work so reranking stays cheap: ``prepare_image`` runs once per
image, ``prepare_text`` once per text, and ``score`` only the per-pair part.

* ``late``  -- LiT-style dual encoder: LayerNorm + MLP projections of the pooled image and
  text features into a shared unit sphere; InfoNCE with a learnable temperature.
* ``early`` -- projected pooled features a (image), b (text); the pair [a, b, a*b, |a-b|]
  goes through an MLP to one match logit.
* ``xattn`` -- text tokens (projected, + positions) attend to the image grid tokens (+ a
  pooled token, + positions) in ``layers`` pre-norm cross-attention layers (residual, no
  per-token FFN, to keep per-pair cost small); the masked mean of the text states and of
  each token's agreement with what it attended to (elementwise product) go through an MLP
  to one logit. Keys and values of the image tokens are computed once per image in
  ``prepare_image``, the first layer's queries once per text in ``prepare_text``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

HEAD_KINDS = ("late", "early", "xattn")


@dataclass(frozen=True)
class HeadConfig:
    kind: str                  # "late" | "early" | "xattn"
    image_dim: int             # frozen image tower width
    text_dim: int              # frozen text tower width
    grid_tokens: int = 0       # image grid tokens (xattn positions)
    text_tokens: int = 0       # text tokens (xattn positions)
    dim: int = 256             # shared / attention width
    hidden: int = 512          # MLP hidden width
    layers: int = 2            # xattn blocks
    heads: int = 4             # xattn attention heads
    dropout: float = 0.1

    def __post_init__(self):
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind {self.kind!r}: expected one of {', '.join(HEAD_KINDS)}")

    def to_dict(self) -> dict:
        return asdict(self)


def _mlp(din: int, hidden: int, dout: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(din, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dout))


class LateHead(nn.Module):
    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        self.image_proj = nn.Sequential(nn.LayerNorm(cfg.image_dim), _mlp(cfg.image_dim, cfg.hidden, cfg.dim, cfg.dropout))
        self.text_proj = nn.Sequential(nn.LayerNorm(cfg.text_dim), _mlp(cfg.text_dim, cfg.hidden, cfg.dim, cfg.dropout))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def encode_image(self, feats: dict) -> torch.Tensor:
        return F.normalize(self.image_proj(feats["pooled"].float()), dim=-1)

    def encode_text(self, feats: dict) -> torch.Tensor:
        return F.normalize(self.text_proj(feats["pooled"].float()), dim=-1)


class EarlyHead(nn.Module):
    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        self.image_proj = nn.Sequential(nn.LayerNorm(cfg.image_dim), nn.Linear(cfg.image_dim, cfg.dim))
        self.text_proj = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, cfg.dim))
        self.match = nn.Sequential(nn.LayerNorm(4 * cfg.dim), _mlp(4 * cfg.dim, cfg.hidden, 1, cfg.dropout))

    def prepare_image(self, feats: dict) -> dict:
        return {"a": self.image_proj(feats["pooled"].float())}

    def prepare_text(self, feats: dict) -> dict:
        return {"b": self.text_proj(feats["pooled"].float())}

    def joint(self, img: dict, txt: dict) -> torch.Tensor:
        """(B, 4 dim): [a, b, a*b, |a-b|], the pair vector the match MLP reads."""
        a, b = img["a"], txt["b"]
        return torch.cat([a, b, a * b, (a - b).abs()], dim=-1)

    def score(self, img: dict, txt: dict) -> torch.Tensor:
        return self.match(self.joint(img, txt)).squeeze(-1)


class CrossAttention(nn.Module):
    """Cross-attention of text queries over image keys/values, pre-norm, no per-token FFN:
    per pair it costs attention + one D x D projection per text token (none for the first
    layer's queries, which depend on the text alone, nor for the last layer's output
    projection, which commutes with the pooling that follows)."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.heads = cfg.heads
        self.norm_kv = nn.LayerNorm(cfg.dim)
        self.kv = nn.Linear(cfg.dim, 2 * cfg.dim)
        self.norm_q = nn.LayerNorm(cfg.dim)
        self.q = nn.Linear(cfg.dim, cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.dim)

    def keys_values(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, G, D) image tokens -> (B, 2, heads, G, D/heads): once per image."""
        b, g, d = tokens.shape
        return self.kv(self.norm_kv(tokens)).view(b, g, 2, self.heads, d // self.heads).permute(0, 2, 3, 1, 4)

    def queries(self, h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape
        return self.q(self.norm_q(h)).view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def attend(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """(B, heads, T, d) queries -> (B, T, D) attended values, before the output projection."""
        b, _, t, _ = q.shape
        return F.scaled_dot_product_attention(q, kv[:, 0], kv[:, 1]).transpose(1, 2).reshape(b, t, -1)


class XattnHead(nn.Module):
    def __init__(self, cfg: HeadConfig):
        super().__init__()
        if cfg.grid_tokens <= 0 or cfg.text_tokens <= 0 or cfg.dim % cfg.heads:
            raise ValueError(f"xattn head needs grid_tokens, text_tokens > 0 and dim % heads == 0: {cfg}")
        self.cfg = cfg
        self.image_in = nn.Sequential(nn.LayerNorm(cfg.image_dim), nn.Linear(cfg.image_dim, cfg.dim))
        self.text_in = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, cfg.dim))
        self.image_pos = nn.Parameter(torch.randn(cfg.grid_tokens + 1, cfg.dim) * 0.02)  # +1: pooled token
        self.text_pos = nn.Parameter(torch.randn(cfg.text_tokens, cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(CrossAttention(cfg) for _ in range(cfg.layers))
        self.match = nn.Sequential(nn.LayerNorm(2 * cfg.dim), _mlp(2 * cfg.dim, cfg.hidden, 1, cfg.dropout))

    def prepare_image(self, feats: dict) -> dict:
        tokens = torch.cat([feats["pooled"].float().unsqueeze(1), feats["grid"].float()], dim=1)
        tokens = self.image_in(tokens) + self.image_pos
        return {"kv": torch.stack([blk.keys_values(tokens) for blk in self.blocks], dim=1)}  # (B, L, 2, H, G+1, d)

    def prepare_text(self, feats: dict) -> dict:
        h = self.text_in(feats["tokens"].float()) + self.text_pos
        return {"h": h, "q": self.blocks[0].queries(h), "mask": feats["mask"].bool()}

    def score(self, img: dict, txt: dict) -> torch.Tensor:
        return self.match(self.joint(img, txt)).squeeze(-1)

    def joint(self, img: dict, txt: dict) -> torch.Tensor:
        """(B, 2 dim): [pooled text states, pooled agreement], the pair vector the match MLP reads."""
        h, q, kv = txt["h"], txt["q"], img["kv"]
        m = txt["mask"].unsqueeze(-1).to(h.dtype)
        m = m / m.sum(1, keepdim=True).clamp(min=1.0)          # masked-mean weights
        last = len(self.blocks) - 1
        for layer, blk in enumerate(self.blocks):
            if layer:
                q = blk.queries(h)
            att = blk.attend(q, kv[:, layer])
            if layer < last:
                h = h + blk.out(att)
        pooled_att = (att * m).sum(1)
        pooled = (h * m).sum(1) + self.blocks[last].out(pooled_att)   # out(mean) == mean(out)
        agree = (txt["h"] * att * m).sum(1)                     # per-token text x what it found
        return torch.cat([pooled, agree], dim=-1)


def build_head(cfg: HeadConfig) -> nn.Module:
    return {"late": LateHead, "early": EarlyHead, "xattn": XattnHead}[cfg.kind](cfg)


def index_features(feats: dict, idx) -> dict:
    """Rows ``idx`` of every tensor in a feature dict (features are indexable on dim 0)."""
    return {k: v[idx] for k, v in feats.items()}
