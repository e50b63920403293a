"""Fusion models over frozen encoders: late (dual), early and cross-attention (cross).

A fusion model = frozen towers from the encoder registry (``towers``) + a small
trained head (``heads``), trained by ``vlbench fit`` (``fit``). Checkpoints
are one safetensors file: the head's weights in fp16, with the head config and the tower
setup in its metadata, so ``--weights PATH`` is self-describing. Importing this module
imports no torch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from harness.core.interfaces import (
    LoadOptions,
    ModelKind,
    ModelMeta,
    WeightsUnavailableError,
)
from harness.models import weights as W
from harness.models.fusion.towers import (
    FLICKR_TOWERS,
    SYNTHETIC_TOWERS,
    HeadOverTowers,
    TowerSpec,
    compute_facts,
)

WEIGHTS_DIR = W.SHIPPED_DIR
METADATA_KEY = "vlbench.fusion"
CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class FusionSpec:
    """A registered fusion model: head kind and sizes, towers, default training data/recipe."""

    name: str
    head: str                       # "late" | "early" | "xattn"
    towers: TowerSpec
    dataset: str                    # what the shipped checkpoint was trained on
    select_split: str
    prefilter: str | None = None    # the late model that prefilters (and mines negatives for) a cross head
    head_options: dict = field(default_factory=dict)   # HeadConfig overrides (dim, hidden, layers, ...)
    recipe: dict = field(default_factory=dict)         # FitOptions overrides of the shipped recipe
    max_train_images: int | None = None

    @property
    def kind(self) -> ModelKind:
        return ModelKind.DUAL if self.head == "late" else ModelKind.CROSS


def _specs() -> list[FusionSpec]:
    # Epoch counts fit a 2-core CPU: an xattn epoch scores 4 pairs per training caption.
    # Flickr8k's xattn uses one layer (32 text x 50 image tokens per pair), synthetic two.
    out = []
    for suffix, towers, dataset, select, max_train, epochs, xattn_layers in (
            ("synth", SYNTHETIC_TOWERS, "synthetic", "val", 6000, (15, 8, 3), 2),
            ("flickr8k", FLICKR_TOWERS, "flickr8k", "dev", None, (30, 10, 4), 1)):
        late = f"fusion-late-{suffix}"
        out += [
            FusionSpec(late, "late", towers, dataset, select, max_train_images=max_train,
                       recipe={"epochs": epochs[0], "lr": 1e-3}),
            FusionSpec(f"fusion-early-{suffix}", "early", towers, dataset, select, late,
                       max_train_images=max_train, recipe={"epochs": epochs[1], "lr": 1e-3}),
            FusionSpec(f"fusion-xattn-{suffix}", "xattn", towers, dataset, select, late,
                       head_options={"dim": 128, "hidden": 256, "layers": xattn_layers, "heads": 4},
                       max_train_images=max_train, recipe={"epochs": epochs[2], "lr": 5e-4}),
        ]
    return out


SPECS: dict[str, FusionSpec] = {s.name: s for s in _specs()}


def checkpoint_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.safetensors"


def param_count(path: str | Path) -> int | None:
    """Parameters of the fusion model a checkpoint makes, without building it: the head's
    from the file's safetensors header (it stores exactly the head's parameters), plus the
    frozen towers its metadata names (``EncoderMeta.params``). None when unknown."""
    from harness.models.encoders import ENCODERS

    try:
        header = W.safetensors_header(path)
        towers = _towers_in(header)
        parts = [ENCODERS.get(towers.image_encoder).params, ENCODERS.get(towers.text_encoder).params]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or foreign file, unknown tower: the listing shows "-"
    return None if None in parts else W.safetensors_numel(header) + sum(parts)


def local_files(name: str, weights: str | None) -> list[Path]:
    """What :func:`load_fusion` reads: the head's checkpoint, then the files of the frozen
    towers its metadata names (``EncoderMeta.files``: weights packages, tokeniser). Only the
    head when its header cannot be read; loading then reports why."""
    head = Path(weights).expanduser() if weights else checkpoint_path(name)
    try:
        towers = _towers_in(W.safetensors_header(head))
    except (OSError, ValueError, KeyError, TypeError):
        return [head]
    return [head, *_tower_files(towers)]


def _towers_in(header: dict) -> TowerSpec:
    return TowerSpec(**json.loads(header["__metadata__"][METADATA_KEY])["towers"])


def _tower_files(towers: TowerSpec) -> list[Path]:
    from harness.models.encoders import ENCODERS

    return [f for enc in (towers.image_encoder, towers.text_encoder) for f in ENCODERS.get(enc).files()]


def card_path(checkpoint: str | Path) -> Path:
    return Path(checkpoint).with_suffix(".card.json")


# ------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: str | Path, head, towers: TowerSpec, extra: dict | None = None) -> None:
    """Head weights (fp16) + config metadata (+ ``extra`` entries: a fitted classifier's
    ``classifier``), written atomically."""
    import os

    from safetensors.torch import save_file

    meta = {"format": CHECKPOINT_FORMAT, "head": head.cfg.to_dict(), "towers": towers.to_dict(), **(extra or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().half().contiguous() for k, v in head.state_dict().items()}, str(tmp),
              metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
    os.replace(tmp, path)


def read_metadata(path: str | Path, what: str) -> dict:
    """A vlbench fusion checkpoint's metadata (head config, towers, classifier if fitted)."""
    from safetensors import safe_open

    if W.checkpoint_format(path, what) != "safetensors":
        raise W.checkpoint_error(what, path, f"not a safetensors file; {what} reads vlbench fusion .safetensors")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except Exception as exc:  # noqa: BLE001 - SafetensorError: a damaged or foreign file
        raise W.checkpoint_error(what, path, exc) from None
    if not raw:
        raise WeightsUnavailableError(f"{what}: {path} is not a vlbench fusion checkpoint (no {METADATA_KEY} metadata)")
    meta = json.loads(raw)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise WeightsUnavailableError(f"{what}: {path} has checkpoint format {meta.get('format')}, "
                                      f"expected {CHECKPOINT_FORMAT}")
    return meta


def load_head(path: str | Path, what: str):
    """(head in eval mode, TowerSpec) from a checkpoint; strict: no missing/unexpected keys."""
    from harness.models.fusion.heads import HeadConfig, build_head

    meta = read_metadata(path, what)
    if "classifier" in meta:
        raise WeightsUnavailableError(f"{what}: {path} is a fitted classifier (labels "
                                      f"{meta['classifier']['classnames']}), not a matching head")
    head = build_head(HeadConfig(**meta["head"]))
    state = {k: v.float() for k, v in W.load_safetensors(path, what).items()}
    result = head.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsUnavailableError(f"{what}: {path} does not fit a {meta['head']['kind']} head "
                                      f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")
    return head.eval().requires_grad_(False), TowerSpec(**meta["towers"])


# ------------------------------------------------------------------------------ adapters

class _FusionBase(HeadOverTowers):
    """A shipped matching head over the frozen towers."""


class FusionDualEncoder(_FusionBase):
    """Late fusion: a DualEncoder whose embeddings are the head's projections."""

    @property
    def embed_dim(self) -> int:
        return self.head.cfg.dim

    def encode_images(self, pixels):
        import torch

        with torch.inference_mode():
            return self.head.encode_image(self.towers.image_features(pixels))

    def encode_texts(self, texts):
        import torch

        with torch.inference_mode():
            return self.head.encode_text(self.towers.text_features(texts))


class FusionCrossEncoder(_FusionBase):
    """Early / cross-attention fusion: a FactoredCrossEncoder (towers + per-item head work once)."""

    def image_features(self, pixels) -> dict:
        import torch

        with torch.inference_mode():
            return self.head.prepare_image(self.towers.image_features(pixels))

    def text_features(self, texts: Sequence[str]) -> dict:
        import torch

        with torch.inference_mode():
            return self.head.prepare_text(self.towers.text_features(texts))

    def score_features(self, image_feats: dict, text_feats: dict):
        import torch

        with torch.inference_mode():
            return self.head.score(image_feats, text_feats).float()

    def score_pairs(self, pixels, texts: Sequence[str]):
        return self.score_features(self.image_features(pixels), self.text_features(texts))

    # JointEncoder (harness.core.interfaces): the vector the head's match MLP reads
    def joint_from_features(self, image_feats: dict, text_feats: dict):
        import torch

        with torch.inference_mode():
            return self.head.joint(image_feats, text_feats).float()

    def joint_features(self, pixels, texts: Sequence[str]):
        return self.joint_from_features(self.image_features(pixels), self.text_features(texts))


def wrap(name: str, head, towers, checkpoint: dict):
    cls = FusionDualEncoder if head.cfg.kind == "late" else FusionCrossEncoder
    return cls(name, towers, head, checkpoint)


def load_fusion(name: str, options: LoadOptions):
    """A registered fusion model from its shipped checkpoint, or ``--weights PATH``."""
    from harness.models.fusion.towers import load_towers

    spec = SPECS[name]
    path = W.local_weights(options.weights, name) if options.weights else checkpoint_path(name)
    if not path.is_file():
        raise WeightsUnavailableError(
            f"{name}: checkpoint {path} is missing; train it with `vlbench fit {name} --dataset {spec.dataset}`"
            " or pass --weights PATH")
    meta = read_metadata(path, name)
    if "classifier" in meta:  # fitted by `vlbench fit --task image_text_classification`
        from harness.models.fusion import classifier as C

        head = C.load_state(C.build(meta), W.load_safetensors(path, name), name, path)
    else:
        head, _ = load_head(path, name)
    if head.cfg.kind != spec.head:
        raise WeightsUnavailableError(f"{name}: {path} holds a {head.cfg.kind} head, expected {spec.head}")
    towers = load_towers(TowerSpec(**meta["towers"]), options)
    # the towers' own checkpoints (ids + sha256) are part of what the numbers depend on
    checkpoint = {"id": str(path), "sha256": W.file_digest(path), "components": towers.checkpoint}
    if "classifier" in meta:
        return C.FittedFusionClassifier(name, towers, head, checkpoint)
    return wrap(name, head, towers, checkpoint)


def register(models) -> None:
    for spec in SPECS.values():
        ckpt = checkpoint_path(spec.name)
        models.register(spec.name, ModelMeta(
            name=spec.name, family="fusion", kind=spec.kind,
            source=f"vlbench:harness/weights/{spec.name} ({spec.towers.image_encoder} + {spec.towers.text_encoder})",
            loader=partial(load_fusion, spec.name), license="Apache-2.0 (vlbench); towers Apache-2.0",
            description=f"{spec.head} fusion head over frozen {spec.towers.image_encoder} + "
                        f"{spec.towers.text_encoder}, trained on {spec.dataset}",
            offline=ckpt.is_file(), prefilter=spec.prefilter, local_files=partial(local_files, spec.name),
            params=param_count(ckpt), plan=_plan))


def _plan(options: LoadOptions) -> dict[str, str]:
    return compute_facts(options.device)
