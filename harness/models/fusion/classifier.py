"""Fusion classifiers: a fusion design's head (late, early, xattn) with a label output layer,
fitted on one dataset's labels (``vlbench fit MODEL --task image_text_classification``) and
loaded back by ``vlbench run --model MODEL --weights FIT.safetensors`` (imports torch).

The trunk is the matching head of :mod:`harness.models.fusion.heads` without its match
output (the late head's temperature and the cross heads' match MLP are dropped); what the
label layer reads is the pair vector of each design:

* ``late``  -- image and text each through their own MLP projection onto the unit sphere
  (u, v), fused only at the end: one linear layer over [u; v; u*v; |u-v|] (the ``interact``
  fusion the probes use; ``concat`` alone is additive and cannot tell whether a text matches);
* ``early`` -- shallow per-modality projections a, b; the pair [a, b, a*b, |a-b|] is
  processed jointly by an MLP (LayerNorm, hidden layer, GELU, dropout) that outputs the labels;
* ``xattn`` -- text tokens attend to the image grid (the trunk's ``joint`` vector), then the
  same MLP shape outputs the labels.

Outputs: K logits. Single-label data (binary or multi-class) is read with a softmax (trained
with cross-entropy); multi-label data with one sigmoid per label (trained with binary
cross-entropy), each label deciding at its own threshold, chosen on held-out train.

A checkpoint is a fusion checkpoint (:func:`harness.models.fusion.model.save_checkpoint`)
whose metadata adds ``classifier``: the class names, the classification kind and the
multi-label thresholds, so the file alone says which labels it predicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from harness.core.errors import UserError
from harness.models.fusion.heads import HeadConfig, _mlp, build_head
from harness.models.fusion.towers import HeadOverTowers

KINDS = ("binary", "multiclass", "multilabel")


@dataclass(frozen=True)
class LabelSpace:
    """What a fitted classifier predicts: its classes, how it reads its logits, thresholds."""

    classnames: tuple[str, ...]
    kind: str                                   # "binary" | "multiclass" | "multilabel"
    thresholds: tuple[float, ...] | None = None  # multi-label: one per class

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"classification kind {self.kind!r}: expected one of {KINDS}")
        if len(self.classnames) < 2 and self.kind != "multilabel":
            raise ValueError(f"a {self.kind} classifier needs at least 2 classes, got {list(self.classnames)}")
        if self.thresholds is not None and len(self.thresholds) != len(self.classnames):
            raise ValueError(f"{len(self.thresholds)} thresholds for {len(self.classnames)} classes")

    @property
    def multilabel(self) -> bool:
        return self.kind == "multilabel"

    def to_dict(self) -> dict:
        return {**asdict(self), "classnames": list(self.classnames),
                "thresholds": None if self.thresholds is None else list(self.thresholds)}

    @classmethod
    def from_dict(cls, d: dict) -> LabelSpace:
        th = d.get("thresholds")
        return cls(tuple(d["classnames"]), d["kind"], None if th is None else tuple(float(t) for t in th))


def joint_dim(cfg: HeadConfig) -> int:
    """Width of the pair vector the label layer reads."""
    return {"late": 4 * cfg.dim, "early": 4 * cfg.dim, "xattn": 2 * cfg.dim}[cfg.kind]


class FusionClassifier(nn.Module):
    """A fusion trunk + a label layer. ``prepare_image`` / ``prepare_text`` run once per image /
    text, ``logits`` per pair, as the matching heads split their work."""

    def __init__(self, cfg: HeadConfig, labels: LabelSpace):
        super().__init__()
        self.cfg, self.labels = cfg, labels
        trunk = build_head(cfg)
        if cfg.kind == "late":
            del trunk.logit_scale  # a matching temperature; no part of a classifier
        else:
            trunk.match = None     # the match MLP's place is taken by ``out``
        self.trunk = trunk
        j, k = joint_dim(cfg), len(labels.classnames)
        self.out = nn.Linear(j, k) if cfg.kind == "late" else \
            nn.Sequential(nn.LayerNorm(j), _mlp(j, cfg.hidden, k, cfg.dropout))

    def prepare_image(self, feats: dict) -> dict:
        if self.cfg.kind == "late":
            return {"u": self.trunk.encode_image(feats)}
        return self.trunk.prepare_image(feats)

    def prepare_text(self, feats: dict) -> dict:
        if self.cfg.kind == "late":
            return {"v": self.trunk.encode_text(feats)}
        return self.trunk.prepare_text(feats)

    def joint(self, img: dict, txt: dict) -> torch.Tensor:
        if self.cfg.kind == "late":
            u, v = img["u"], txt["v"]
            return torch.cat([u, v, u * v, (u - v).abs()], dim=-1)
        return self.trunk.joint(img, txt)

    def logits(self, img: dict, txt: dict) -> torch.Tensor:
        """(B, K) label logits of prepared image and text features (aligned pairs)."""
        return self.out(self.joint(img, txt))

    def forward(self, img_feats: dict, txt_feats: dict) -> torch.Tensor:
        return self.logits(self.prepare_image(img_feats), self.prepare_text(txt_feats))


def decide(logits: torch.Tensor, labels: LabelSpace) -> dict:
    """What a fitted classifier says of its (N, K) logits: ``pred`` (class index per item, or
    its sorted classes for multi-label), ``indicators`` (multi-label, N x K bool) and ``score``
    (binary: the probability of class 1, for AUROC). Argmax in float64, as the probes'.

    >>> ls = LabelSpace(("no", "yes"), "binary")
    >>> out = decide(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), ls)
    >>> out["pred"], [round(s, 3) for s in out["score"]]
    ([0, 1], [0.119, 0.731])
    >>> decide(torch.tensor([[1.0, -1.0, 0.2]]), LabelSpace(("a", "b", "c"), "multilabel", (0.5, 0.5, 0.6)))["pred"]
    [[0]]
    """
    x = logits.detach().double().cpu()
    if labels.multilabel:
        th = torch.as_tensor(labels.thresholds or [0.5] * x.shape[1], dtype=torch.float64)
        ind = x.sigmoid() >= th
        return {"pred": [torch.nonzero(row).flatten().tolist() for row in ind], "indicators": ind.numpy()}
    out = {"pred": x.argmax(1).tolist()}
    if labels.kind == "binary":
        out["score"] = x.softmax(-1)[:, 1].tolist()
    return out


def build(meta: dict) -> FusionClassifier:
    """An untrained classifier of a checkpoint's metadata (``head`` and ``classifier``)."""
    return FusionClassifier(HeadConfig(**meta["head"]), LabelSpace.from_dict(meta["classifier"]))


def load_state(clf: FusionClassifier, state: dict, what: str, path) -> FusionClassifier:
    """``state`` into ``clf``, strictly (a file that does not fit is one clear error)."""
    from harness.core.interfaces import WeightsUnavailableError

    result = clf.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsUnavailableError(f"{what}: {path} does not fit a {clf.cfg.kind} classifier "
                                      f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")
    return clf.eval().requires_grad_(False)


# ------------------------------------------------------------------------------ adapter

class FittedFusionClassifier(HeadOverTowers):
    """``vlbench run`` over a fitted classifier checkpoint: the frozen towers + the fitted head.
    It predicts its own labels (:class:`harness.core.interfaces.LabelPredictor`) and hands the
    towers' pooled features out for the modality ablations; it does no matching."""

    @property
    def label_space(self) -> LabelSpace:
        return self.head.labels

    @property
    def design(self) -> str:
        return self.head.cfg.kind

    def image_features(self, pixels) -> dict:
        """Per image, once: ``prep`` (what the head keeps of it) and ``pooled`` (the image
        tower's pooled feature, for the image-only ablation)."""
        with torch.inference_mode():
            tower = self.towers.image_features(pixels)
            return {"prep": self.head.prepare_image(tower), "pooled": tower["pooled"].float()}

    def text_features(self, texts: Sequence[str]) -> dict:
        with torch.inference_mode():
            tower = self.towers.text_features(texts)
            return {"prep": self.head.prepare_text(tower), "pooled": tower["pooled"].float()}

    def classify_features(self, image_prep: dict, text_prep: dict):
        """(B, K) logits of aligned prepared image and text features."""
        with torch.inference_mode():
            return self.head.logits(image_prep, text_prep).float()

    def decide(self, logits) -> dict:
        return decide(logits, self.label_space)

    def _no_matching(self, *args, **kwargs):
        raise UserError(f"{self.name}: {self.checkpoint.get('id')} is a fitted classifier "
                        f"({self.design} head, labels {list(self.label_space.classnames)}); it runs "
                        "image_text_classification only")

    encode_images = encode_texts = score_pairs = joint_features = _no_matching
