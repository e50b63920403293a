"""The contracts every model adapter keeps (see docs/architecture.md, "Interfaces").

Only typing here: importing this module must not import torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from harness.core.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import torch
    from PIL import Image


class ModelKind(str, Enum):
    DUAL = "dual"    # embeds images and texts separately (CLIP, SigLIP, late fusion)
    CROSS = "cross"  # scores (image, text) pairs jointly (ViLT, early/cross-attention fusion)
    BOTH = "both"    # BLIP: ITC dual encoder plus ITM cross-encoder
    METRIC = "metric"  # a caption metric scoring judged pairs (metric:cider, metric:clip_s:JUDGE)
    CAPTIONER = "captioner"  # writes a caption per image (BLIP/GIT captioning, CoCa, captions:FILE)


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    AMP = "amp"


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model; everything here can change the numbers, so it is recorded."""

    device: str = "cpu"
    precision: Precision = Precision.FP32
    weights: str | None = None  # local checkpoint file or directory overriding the source
    # options the model declares itself (``ModelMeta.model_options``), sorted (key, value) pairs:
    # ``--model-option activation=quick_gelu``
    model_options: tuple[tuple[str, str], ...] = ()

    def model_option(self, key: str) -> str | None:
        return dict(self.model_options).get(key)


@runtime_checkable
class DualEncoder(Protocol):
    """Embeds images and texts into one space; outputs are L2-normalised float tensors."""

    name: str
    embed_dim: int

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]:
        """PIL image -> preprocessed tensor; picklable, so data-loader workers can run it."""

    def tokenize(self, texts: Sequence[str]) -> Any:
        """Texts -> whatever ``encode_texts`` takes (a tensor or a dict of tensors)."""

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) preprocessed pixels -> (B, D) unit-norm embeddings."""

    def encode_texts(self, tokens: Any) -> torch.Tensor:
        """Tokenised batch -> (B, D) unit-norm embeddings."""


@runtime_checkable
class CrossEncoder(Protocol):
    """Scores aligned (image, text) pairs jointly; higher means a better match."""

    name: str

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]: ...

    def score_pairs(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """(B, C, H, W) pixels and B texts -> (B,) match scores for the aligned pairs."""


@runtime_checkable
class FactoredCrossEncoder(CrossEncoder, Protocol):
    """A cross-encoder whose towers run once per image and once per text, reused across pairs.

    Reranking k candidates per query then costs one vision pass per image (BLIP ITM,
    fusion heads over frozen encoders) instead of one per pair. Features are tensors, or
    dicts of tensors, indexable along dim 0; they may live on the model's device.
    """

    def image_features(self, pixels: torch.Tensor) -> Any:
        """(B, C, H, W) pixels -> per-image features (e.g. patch tokens), first dim B."""

    def text_features(self, texts: Sequence[str]) -> Any:
        """B texts -> per-text features (token ids/states), first dim B."""

    def score_features(self, image_feats: Any, text_feats: Any) -> torch.Tensor:
        """Aligned features (row i of each) -> (B,) match scores, equal to ``score_pairs``."""


@runtime_checkable
class JointEncoder(Protocol):
    """Optional, for cross-encoders: the joint representation of aligned (image, text) pairs,
    the pooled multimodal vector their match head reads (ViLT's pooler output, BLIP ITM's
    [ENC] token, a fusion head's input to its match MLP). Frozen features for probes that
    classify image + text items (``image_text_classification``)."""

    name: str

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]: ...

    def joint_features(self, pixels: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """(B, C, H, W) pixels and B texts -> (B, D) float joint features of the aligned pairs."""


@runtime_checkable
class LabelPredictor(Protocol):
    """Optional: a model fitted to one label set (``vlbench fit MODEL --task
    image_text_classification``) that predicts labels itself. ``label_space`` has
    ``classnames``, ``kind`` (binary / multiclass / multilabel) and ``thresholds``; ``design``
    names the fitted head (late / early / xattn)."""

    name: str
    label_space: Any
    design: str

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]: ...

    def image_features(self, pixels: torch.Tensor) -> dict:
        """Per image, once: {"prep": what the head keeps (tensors, first dim = images),
        "pooled": (B, Di) the unimodal feature the image-only ablation probes}."""

    def text_features(self, texts: Sequence[str]) -> dict:
        """Per text, once: {"prep": ..., "pooled": (B, Dt)}."""

    def classify_features(self, image_prep: dict, text_prep: dict) -> torch.Tensor:
        """Aligned prepared features -> (B, K) label logits."""

    def decide(self, logits: torch.Tensor) -> dict:
        """(N, K) logits -> {"pred", "indicators" (multi-label), "score" (binary)}."""


@dataclass(frozen=True)
class GenerateOptions:
    """How a captioner decodes; every field can change the captions, so the record states them.
    Greedy or beam search by default (``do_sample`` off), as the COCO caption results of
    BLIP, GIT and CoCa are reported."""

    max_new_tokens: int = 30
    num_beams: int = 3       # BLIP's captioning evaluation: beam search, 3 beams
    do_sample: bool = False
    batch_size: int = 32


@runtime_checkable
class Captioner(Protocol):
    """Writes one caption per image. ``last_generated_tokens`` is the number of new tokens the
    last ``generate`` call produced (up to each caption's end token), for tokens/s."""

    name: str
    last_generated_tokens: int

    def image_transform(self) -> Callable[[Image.Image], torch.Tensor]: ...

    def generate(self, pixels: torch.Tensor, options: GenerateOptions) -> list[str]:
        """(B, C, H, W) preprocessed pixels -> B captions (special tokens removed)."""


@dataclass(frozen=True)
class ModelMeta:
    """Cheap, registered description of a model; ``loader`` does the heavy work when called."""

    name: str
    family: str                      # "open_clip", "hf-clip", "blip", "vilt", "fusion", ...
    kind: ModelKind                  # what the model mainly is (its row in listings, the record's kind)
    source: str                      # e.g. "open_clip:ViT-B-32/openai", "hf:openai/clip-vit-base-patch32"
    loader: Callable[[LoadOptions], Any]
    params: int | None = None        # parameter count, when known without loading
    license: str = "unknown"
    description: str = ""
    offline: bool = False            # weights ship with vlbench, so it runs with no network
    prefilter: str | None = None     # cross-encoders: the dual encoder whose top-k they rerank
    aliases: tuple[str, ...] = field(default_factory=tuple)
    # The local files the loader reads for a ``--weights`` value (None: the shipped ones), so
    # the run key can hash their contents before loading. None: weights resolved at load (hub).
    local_files: Callable[[str | None], list[Path]] | None = None
    reads_images: bool = True        # False: scores text alone (reference-based caption metrics)
    also: tuple[ModelKind, ...] = ()  # further kinds the loaded object serves (CoCa: dual + captioner)
    # ``--model-option`` keys this model takes -> their allowed values (open_clip: activation)
    model_options: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    # What the loader will build that can change the numbers, decided before loading (open_clip:
    # {"activation": "quick_gelu"}); part of the run key, and checked against the loaded model.
    plan: Callable[[LoadOptions], dict[str, str]] | None = None

    def kinds(self) -> tuple[ModelKind, ...]:
        """Every kind this model serves, its main kind first."""
        return (self.kind, *(k for k in self.also if k is not self.kind))

    def load(self, options: LoadOptions | None = None) -> Any:
        return self.loader(options or LoadOptions())


def model_facts(model: Any) -> dict[str, str]:
    """What a loaded adapter states about how its network computes (open_clip: ``activation``,
    the MLP activation it was built with; fusion models: ``compute_facts``, how their frozen
    towers are run): recorded, and part of the embedding-cache key."""
    act = getattr(model, "activation", None)
    facts = {"activation": act} if isinstance(act, str) else {}
    more = getattr(model, "compute_facts", None)
    if isinstance(more, dict):
        facts.update({str(k): str(v) for k, v in more.items()})
    return facts


class WeightsUnavailableError(UserError, RuntimeError):
    """Weights cannot be had (no network, no local copy). The message is one line for users."""
