"""BLIP image-text retrieval (``BlipForImageTextRetrieval``): ITC dual encoder + ITM cross-encoder.

One object is both:

* a DualEncoder (ITC): ``vision_proj`` of the image [CLS] state and ``text_proj`` of the
  unimodal text [CLS] state, L2-normalised -- BLIP's contrastive head, used to rank everything;
* a FactoredCrossEncoder (ITM): ``image_features`` = the vision tower's hidden states (run
  once per image), ``text_features`` = token ids + mask, ``score_features`` = the ITM head's
  match probability (softmax[:, 1]) from the text encoder cross-attending to those states.
  Reranking k captions of an image therefore costs one vision pass, not k.

Text follows BLIP's retrieval evaluation (salesforce/BLIP, train_retrieval.py / blip_retrieval.py):
at most 35 tokens, padded to 35 (so feature rows from any batch stack), and for ITM the first
token is replaced by ``[ENC]`` when the tokenizer defines it, as the original model was trained;
transformers' own ``forward`` keeps ``[CLS]`` (huggingface/transformers#25629), which is what
happens with tokenizers that do not define ``[ENC]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from harness.core.interfaces import LoadOptions, ModelKind, ModelMeta
from harness.models import hub
from harness.models.common import autocast, unit_norm

MAX_TOKENS = 35        # BLIP retrieval evaluation: max_length=35, padding="max_length"
ENC_TOKEN = "[ENC]"    # BLIP's image-grounded encoder token (tokenizer.enc_token_id)


class BlipRetrieval(hub.HubAdapter):
    """DualEncoder (ITC) and FactoredCrossEncoder (ITM) over one ``BlipForImageTextRetrieval``."""

    def __init__(self, name: str, model, tokenizer, image_processor, options: LoadOptions, checkpoint: dict):
        super().__init__(name, model, tokenizer, options, checkpoint)
        self.embed_dim = int(model.config.image_text_hidden_size)
        vocab = tokenizer.get_vocab()
        self.itm_first_token_id = vocab.get(ENC_TOKEN)  # None: keep the tokenizer's [CLS]
        self._transform = hub.ProcessorTransform(image_processor)

    def image_transform(self):
        return self._transform

    # ---- ITC: dual encoder -------------------------------------------------------------

    def text_limit(self):
        from harness.models.text_limits import hf_limit

        return hf_limit(self.tokenizer, MAX_TOKENS)

    def tokenize(self, texts: Sequence[str]) -> dict:
        batch = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=MAX_TOKENS,
                               return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def _vision(self, pixels):
        return self.model.vision_model(pixel_values=pixels.to(self.device, dtype=self._dtype)).last_hidden_state

    def encode_images(self, pixels):
        import torch

        with torch.inference_mode(), autocast(self.device, self.options.precision):
            return unit_norm(self.model.vision_proj(self._vision(pixels)[:, 0, :]))

    def encode_texts(self, tokens: dict):
        import torch

        with torch.inference_mode(), autocast(self.device, self.options.precision):
            t = hub.to_device(tokens, self.device)
            states = self.model.text_encoder(input_ids=t["input_ids"], attention_mask=t["attention_mask"])
            return unit_norm(self.model.text_proj(states.last_hidden_state[:, 0, :]))

    # ---- ITM: factored cross-encoder ----------------------------------------------------

    def image_features(self, pixels):
        """(B, 3, H, W) -> (B, 1 + patches, width) vision hidden states, on the model's device."""
        import torch

        with torch.inference_mode(), autocast(self.device, self.options.precision):
            return self._vision(pixels)

    def text_features(self, texts: Sequence[str]) -> dict:
        """B texts -> {"input_ids", "attention_mask"}, (B, 35) each, first token [ENC] if known."""
        tokens = self.tokenize(texts)
        if self.itm_first_token_id is not None:
            tokens["input_ids"] = tokens["input_ids"].clone()
            tokens["input_ids"][:, 0] = self.itm_first_token_id
        return tokens

    def score_features(self, image_feats, text_feats: dict):
        """Row i of each -> (B,) float32 ITM match probabilities."""
        import torch

        with torch.inference_mode(), autocast(self.device, self.options.precision):
            logits = self.model.itm_head(self._itm_token(image_feats, text_feats)).float()
            return logits.softmax(dim=-1)[:, 1]

    def score_pairs(self, pixels, texts: Sequence[str]):
        """(B, 3, H, W) pixels and B texts -> (B,) ITM match probabilities of the aligned pairs."""
        return self.score_features(self.image_features(pixels), self.text_features(texts))

    def joint_features(self, pixels, texts: Sequence[str]):
        """(B, width) float32: the [ENC] token's state after cross-attending to the image, the
        vector BLIP's ITM head classifies."""
        import torch

        with torch.inference_mode(), autocast(self.device, self.options.precision):
            return self._itm_token(self.image_features(pixels), self.text_features(texts)).float()

    def _itm_token(self, image_feats, text_feats: dict):
        import torch

        t = hub.to_device(text_feats, self.device)
        states = image_feats.to(self.device, dtype=self._dtype)
        if states.shape[0] != t["input_ids"].shape[0]:
            raise ValueError(f"{self.name}: {states.shape[0]} image rows vs {t['input_ids'].shape[0]} text rows")
        image_mask = torch.ones(states.shape[:-1], dtype=torch.long, device=states.device)
        out = self.model.text_encoder(input_ids=t["input_ids"], attention_mask=t["attention_mask"],
                                      encoder_hidden_states=states, encoder_attention_mask=image_mask)
        return out.last_hidden_state[:, 0, :]


def load_blip(name: str, hub_id: str | None, options: LoadOptions) -> BlipRetrieval:
    from transformers import BlipForImageTextRetrieval

    parts = hub.load_parts(name, hub_id, options, ("blip",), lambda config: BlipForImageTextRetrieval)
    return BlipRetrieval(name, parts.model, parts.tokenizer, parts.processor, options, parts.checkpoint)


# ------------------------------------------------------------------------------ registry
# params: base = transformers' default BlipConfig (the base hub config), 223,744,258.

BLIP_MODELS = (
    # (hub id = registered name, aliases, params, fine-tuned on)
    ("Salesforce/blip-itm-base-coco", ("blip", "blip-base-coco"), 223_744_258, "COCO"),
    ("Salesforce/blip-itm-base-flickr", ("blip-base-flickr",), 223_744_258, "Flickr30k"),
    ("Salesforce/blip-itm-large-coco", ("blip-large-coco",), None, "COCO"),
    ("Salesforce/blip-itm-large-flickr", ("blip-large-flickr",), None, "Flickr30k"),
)


def register(models) -> None:
    for hub_id, aliases, params, data in BLIP_MODELS:
        models.register(hub_id, ModelMeta(
            name=hub_id, family="blip", kind=ModelKind.BOTH, source=f"hf:{hub_id}",
            loader=partial(load_blip, hub_id, hub_id), params=params, license="BSD-3-Clause (salesforce/BLIP)",
            description=f"BLIP retrieval fine-tuned on {data}: ITC dual encoder + ITM reranker",
            aliases=aliases), aliases=aliases)
