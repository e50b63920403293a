"""open_clip CoCa (Yu et al. 2022): one model that is a dual encoder (its contrastive towers)
and a captioner (its multimodal text decoder) -- ``ModelMeta.kind`` DUAL, ``also`` CAPTIONER.

Decoding is done here over CoCa's own forward (``model(image, text, image_latent=...,
image_embs=...)["logits"]``) because open_clip's ``CoCa.generate`` needs transformers'
``BeamSearchScorer``, which transformers 5 removed (open_clip 3.3 then asserts). The image is
encoded once per batch; greedy, sampling, or beam search over ``num_beams`` (the best
finished hypothesis by summed log-probability / length, transformers' default
``length_penalty=1``), from open_clip's start token to its end token, at most
``max_new_tokens``. Captions are decoded as CLIP_benchmark does (``open_clip.decode``, text
before ``<end_of_text>``, ``<start_of_text>`` removed).
"""

from __future__ import annotations

from functools import partial

from harness.core.interfaces import GenerateOptions, LoadOptions, ModelKind, ModelMeta
from harness.models.activation import MODEL_OPTIONS as OPEN_CLIP_OPTIONS
from harness.models.activation import plan
from harness.models.clip import OpenClipDualEncoder, OpenClipSource, load_open_clip
from harness.models.common import autocast
from harness.models.decoding import decode

SOT, EOT = 49406, 49407  # open_clip's SimpleTokenizer start / end of text


class CocaModel(OpenClipDualEncoder):
    """DualEncoder (from :class:`OpenClipDualEncoder`) and Captioner over an open_clip CoCa."""

    last_generated_tokens = 0

    def generate(self, pixels, options: GenerateOptions) -> list[str]:
        import open_clip
        import torch

        with torch.inference_mode(), autocast(self.device, self.options.precision):
            images = pixels.to(self.device, dtype=self._dtype)
            latent, embs = self.model._encode_image(images)
            rows = decode(partial(self._logprobs, images, latent, embs), len(images), SOT, EOT, options, images.device)
        self.last_generated_tokens = sum(len(r) for r in rows)
        texts = [open_clip.decode(torch.tensor([SOT, *r])) for r in rows]
        return [" ".join(t.split("<end_of_text>")[0].replace("<start_of_text>", "").split()) for t in texts]

    def _logprobs(self, images, latent, embs, text, rows):
        import torch

        if rows is not None:  # beam search: the open prefixes of every row, rows[i] the image of prefix i
            images, latent, embs = (t[rows.to(t.device)] for t in (images, latent, embs))
        text = text.to(images.device)
        logits = self.model(images, text, image_latent=latent, image_embs=embs, output_labels=False)["logits"][:, -1]
        return torch.log_softmax(logits.float(), dim=-1)


def load_coca(name: str, arch: str, tag: str | None, options: LoadOptions) -> CocaModel:
    enc = load_open_clip(name, OpenClipSource(arch, tag), options)
    return CocaModel(name, enc.model, enc._preprocess, enc._tokenizer, options, enc.checkpoint)


COCA_MODELS = (
    # (arch, pretrained tag, aliases)
    ("coca_ViT-B-32", "mscoco_finetuned_laion2b_s13b_b90k", ("coca-vit-b-32-coco",)),
    ("coca_ViT-B-32", "laion2b_s13b_b90k", ("coca-vit-b-32",)),
)


def register(models) -> None:
    for arch, tag, aliases in COCA_MODELS:
        name = f"{arch}/{tag}"
        models.register(name, ModelMeta(
            name=name, family="open_clip-coca", kind=ModelKind.DUAL, also=(ModelKind.CAPTIONER,),
            source=f"open_clip:{name}", loader=partial(load_coca, name, arch, tag),
            model_options=OPEN_CLIP_OPTIONS, plan=partial(plan, arch, tag),
            license="MIT (OpenCLIP); data: LAION-2B" + (", COCO" if "mscoco" in tag else ""),
            description="CoCa: contrastive dual encoder and caption decoder", aliases=aliases), aliases=aliases)
