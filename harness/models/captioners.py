"""transformers captioners (``Captioner``): BLIP captioning (``BlipForConditionalGeneration``)
and GIT (``GitForCausalLM``), loaded the one way (:mod:`harness.models.hub`).

Generation is transformers' ``generate`` with the KV cache, batched, greedy or beam search
(``GenerateOptions``). Captions are decoded without special tokens and with the prompt cut
off; ``last_generated_tokens`` counts each caption's new tokens up to and including its end
token (padding after it is not generated work).

* BLIP: the image-grounded text decoder after ``[DEC]``, prompted with "a picture of " and
  that prompt stripped from the output, as BLIP's COCO captioning evaluation does
  (salesforce/BLIP ``configs/caption_coco.yaml``: prompt 'a picture of ', beam 3).
* GIT: the decoder-only model from its [CLS] start token, unprompted (microsoft/git-base-coco's
  model card).
"""

from __future__ import annotations

from functools import partial

from harness.core.interfaces import GenerateOptions, LoadOptions, ModelKind, ModelMeta
from harness.models import hub
from harness.models.common import autocast

BLIP_PROMPT = "a picture of "  # salesforce/BLIP configs/caption_coco.yaml


def new_tokens(sequences, start: int, eos_id: int | None, pad_id: int | None) -> int:
    """Tokens generated after position ``start``: up to and including each row's first end
    token, else every non-pad token.

    >>> import torch
    >>> new_tokens(torch.tensor([[5, 7, 8, 2, 0], [5, 9, 0, 0, 0]]), 1, eos_id=2, pad_id=0)
    4
    """
    total = 0
    for row in sequences[:, start:].tolist():
        if eos_id is not None and eos_id in row:
            total += row.index(eos_id) + 1
        else:
            total += sum(1 for t in row if t != pad_id)
    return total


def generate_kwargs(options: GenerateOptions) -> dict:
    return {"max_new_tokens": options.max_new_tokens, "num_beams": options.num_beams,
            "do_sample": options.do_sample, "use_cache": True}


class HubCaptioner(hub.HubAdapter):
    """Shared parts: the processor's transform, decoding, the prompt cut, token counting."""

    prompt = ""

    def __init__(self, name: str, model, tokenizer, image_processor, options: LoadOptions, checkpoint: dict):
        super().__init__(name, model, tokenizer, options, checkpoint)
        self._transform = hub.ProcessorTransform(image_processor)
        self.last_generated_tokens = 0

    def image_transform(self):
        return self._transform

    def _decode(self, sequences, start: int) -> list[str]:
        texts = self.tokenizer.batch_decode(sequences[:, start:], skip_special_tokens=True)
        return [" ".join(t.split()) for t in texts]


class BlipCaptioner(HubCaptioner):
    prompt = BLIP_PROMPT

    def generate(self, pixels, options: GenerateOptions) -> list[str]:
        import torch

        text_cfg = self.model.config.text_config
        prompt = self.tokenizer([self.prompt] * len(pixels), return_tensors="pt")
        ids = prompt["input_ids"].to(self.device)
        with torch.inference_mode(), autocast(self.device, self.options.precision):
            out = self.model.generate(pixel_values=pixels.to(self.device, dtype=self._dtype), input_ids=ids,
                                      attention_mask=prompt["attention_mask"].to(self.device),
                                      **generate_kwargs(options))
        start = ids.shape[1] - 1  # the model drops the prompt's final [SEP] and puts [DEC] first
        self.last_generated_tokens = new_tokens(out, start, text_cfg.sep_token_id, text_cfg.pad_token_id)
        return self._decode(out, start)


class GitCaptioner(HubCaptioner):
    def generate(self, pixels, options: GenerateOptions) -> list[str]:
        import torch

        cfg = self.model.config
        with torch.inference_mode(), autocast(self.device, self.options.precision):
            out = self.model.generate(pixel_values=pixels.to(self.device, dtype=self._dtype),
                                      **generate_kwargs(options))
        start = 1  # the [CLS] start token
        self.last_generated_tokens = new_tokens(out, start, cfg.eos_token_id, cfg.pad_token_id)
        return self._decode(out, start)


def load_blip_captioner(name: str, hub_id: str | None, options: LoadOptions) -> BlipCaptioner:
    from transformers import BlipForConditionalGeneration

    parts = hub.load_parts(name, hub_id, options, ("blip",), lambda config: BlipForConditionalGeneration)
    return BlipCaptioner(name, parts.model, parts.tokenizer, parts.processor, options, parts.checkpoint)


def load_git(name: str, hub_id: str | None, options: LoadOptions) -> GitCaptioner:
    from transformers import GitForCausalLM

    parts = hub.load_parts(name, hub_id, options, ("git",), lambda config: GitForCausalLM)
    return GitCaptioner(name, parts.model, parts.tokenizer, parts.processor, options, parts.checkpoint)


# ------------------------------------------------------------------------------ registry
CAPTIONERS = (
    # (hub id = registered name, aliases, loader, family, license, what it is)
    ("Salesforce/blip-image-captioning-base", ("blip-caption", "blip-caption-base"), load_blip_captioner, "blip",
     "BSD-3-Clause (salesforce/BLIP)", "BLIP captioning (ViT-B), fine-tuned on COCO"),
    ("Salesforce/blip-image-captioning-large", ("blip-caption-large",), load_blip_captioner, "blip",
     "BSD-3-Clause (salesforce/BLIP)", "BLIP captioning (ViT-L), fine-tuned on COCO"),
    ("microsoft/git-base-coco", ("git-base-coco",), load_git, "git", "MIT (microsoft/GenerativeImage2Text)",
     "GIT base, fine-tuned on COCO captions"),
)


def register(models) -> None:
    for hub_id, aliases, loader, family, license_, what in CAPTIONERS:
        models.register(hub_id, ModelMeta(
            name=hub_id, family=family, kind=ModelKind.CAPTIONER, source=f"hf:{hub_id}",
            loader=partial(loader, hub_id, hub_id), license=license_, description=what, aliases=aliases),
            aliases=aliases)
