"""transformers dual encoders: CLIP (``CLIPModel``), SigLIP (``SiglipModel``), ALIGN (``AlignModel``).

One adapter, keyed by ``config.model_type``; what differs per family is the text recipe
(how the model was trained to see text) and where its embedding width lives:

* CLIP: BPE, at most 77 tokens (truncated, end-of-text kept), padded to the batch's longest;
  causal attention + attention mask make the padding irrelevant to the pooled EOS state.
* SigLIP: sentencepiece, padded to exactly 64 tokens with no attention mask, as it was
  trained -- the text tower pools the LAST position, so shorter padding changes the output
  (transformers' SigLIP docs: use ``padding="max_length"``).
* ALIGN: BERT WordPiece, at most 64 tokens (AlignProcessor's default), [CLS] pooled.

Images go through the model's own image processor (resize/crop/normalise as trained).
Embeddings come back L2-normalised float32 whatever the precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from harness.core.interfaces import LoadOptions, ModelKind, ModelMeta
from harness.models import hub
from harness.models.common import autocast, unit_norm


@dataclass(frozen=True)
class TextRecipe:
    max_length: int
    padding: str                  # "longest" or "max_length"
    inputs: tuple[str, ...]       # tokenizer outputs the text tower takes


@dataclass(frozen=True)
class DualFamily:
    model_class: str              # transformers class name
    text: TextRecipe


FAMILIES = {
    "clip": DualFamily("CLIPModel", TextRecipe(77, "longest", ("input_ids", "attention_mask"))),
    "siglip": DualFamily("SiglipModel", TextRecipe(64, "max_length", ("input_ids",))),
    "align": DualFamily("AlignModel", TextRecipe(64, "longest", ("input_ids", "attention_mask", "token_type_ids"))),
}


def embed_dim(config) -> int:
    """Width of the shared space: SigLIP's text head maps to the text width, others project."""
    if config.model_type == "siglip":
        return int(config.text_config.hidden_size)
    return int(config.projection_dim)


def config_activation(config) -> str | None:
    """``gelu`` / ``quick_gelu`` when both towers of a transformers config use it, else None.

    >>> from types import SimpleNamespace as NS
    >>> config_activation(NS(text_config=NS(hidden_act="quick_gelu"), vision_config=NS(hidden_act="quick_gelu")))
    'quick_gelu'
    >>> config_activation(NS(text_config=NS(hidden_act="gelu_pytorch_tanh"), vision_config=NS(hidden_act="gelu_pytorch_tanh")))
    """
    acts = {getattr(getattr(config, part, None), "hidden_act", None) for part in ("text_config", "vision_config")}
    return next(iter(acts)) if len(acts) == 1 and acts <= {"gelu", "quick_gelu"} else None


class HFDualEncoder(hub.HubAdapter):
    """DualEncoder over a transformers CLIP / SigLIP / ALIGN model."""

    def __init__(self, name: str, model, tokenizer, image_processor, recipe: TextRecipe,
                 options: LoadOptions, checkpoint: dict):
        super().__init__(name, model, tokenizer, options, checkpoint)
        self.recipe = recipe
        self.model_type = model.config.model_type
        self.embed_dim = embed_dim(model.config)
        self._transform = hub.ProcessorTransform(image_processor)
        # transformers builds what the config says (OpenAI's CLIP ports: quick_gelu); recorded for verify
        self.activation = config_activation(model.config)
        self.activation_from = "the transformers config's hidden_act" if self.activation else None

    def image_transform(self):
        return self._transform

    def text_limit(self):
        from harness.models.text_limits import hf_limit

        return hf_limit(self.tokenizer, self.recipe.max_length)

    def tokenize(self, texts: Sequence[str]) -> dict:
        r = self.recipe
        batch = self.tokenizer(list(texts), padding=r.padding, truncation=True, max_length=r.max_length,
                               return_tensors="pt")
        return {k: batch[k] for k in r.inputs if k in batch}

    def encode_images(self, pixels):
        import torch

        with torch.inference_mode(), autocast(self.device, self.options.precision):
            x = pixels.to(self.device, dtype=self._dtype, non_blocking=True)
            return unit_norm(self.model.get_image_features(pixel_values=x).pooler_output)

    def encode_texts(self, tokens: dict):
        import torch

        with torch.inference_mode(), autocast(self.device, self.options.precision):
            out = self.model.get_text_features(**hub.to_device(tokens, self.device))
            return unit_norm(out.pooler_output)


def load_hf_dual(name: str, hub_id: str | None, options: LoadOptions) -> HFDualEncoder:
    import transformers

    parts = hub.load_parts(name, hub_id, options, FAMILIES,
                           lambda config: getattr(transformers, FAMILIES[config.model_type].model_class))
    family = FAMILIES[parts.config.model_type]
    return HFDualEncoder(name, parts.model, parts.tokenizer, parts.processor, family.text, options,
                         parts.checkpoint)


# ------------------------------------------------------------------------------ registry
# params: transformers' default config of each architecture is the base hub config, so the
# base counts are counted on it (CLIP ViT-B/32: 151,277,313, as open_clip counts ViT-B-32);
# CLIP B/16 and L/14 are open_clip's counts of the same architectures.

HF_DUALS = (
    # (hub id = registered name, family, aliases, params, license)
    ("openai/clip-vit-base-patch32", "hf-clip", ("hf-clip-vit-b-32",), 151_277_313, "MIT (OpenAI CLIP)"),
    ("openai/clip-vit-base-patch16", "hf-clip", ("hf-clip-vit-b-16",), 149_620_737, "MIT (OpenAI CLIP)"),
    ("openai/clip-vit-large-patch14", "hf-clip", ("hf-clip-vit-l-14",), 427_616_513, "MIT (OpenAI CLIP)"),
    ("google/siglip-base-patch16-224", "siglip", ("siglip", "siglip-b-16"), 203_155_970, "Apache-2.0"),
    ("kakaobrain/align-base", "align", ("align", "align-base"), 172_117_841,
     "see the model card (trained on COYO-700M)"),
)


def hf_meta(hub_id: str, family: str = "hf", aliases: tuple[str, ...] = (), params: int | None = None,
            license: str = "see the model card", name: str | None = None) -> ModelMeta:
    """A dual encoder from any transformers CLIP/SigLIP/ALIGN hub id (``hf:ORG/NAME``)."""
    name = name or hub_id
    return ModelMeta(
        name=name, family=family, kind=ModelKind.DUAL, source=f"hf:{hub_id}",
        loader=partial(load_hf_dual, name, hub_id), params=params, license=license, aliases=aliases,
        description="transformers CLIP / SigLIP / ALIGN dual encoder")


def register(models) -> None:
    for hub_id, family, aliases, params, lic in HF_DUALS:
        models.register(hub_id, hf_meta(hub_id, family, aliases, params, lic), aliases=aliases)
