"""ViLT image-text retrieval (``ViltForImageAndTextRetrieval``): a pure cross-encoder.

ViLT has no separate towers: text tokens and image patches go through one transformer, so
every (image, text) pair costs a full forward pass -- retrieval reranks the top-k of a
prefilter dual encoder (``ModelMeta.prefilter``).

Fixed-size pixels. ViLT's processor resizes the shorter side to 384 and caps the longer side
at int(1333/800 x 384) = 639, keeping the aspect ratio -- the ViLT paper's evaluation
setting -- then rounds both sides down to multiples of 32 (so at most 608) and pads a batch
to its largest image with a ``pixel_mask``. A DataLoader needs every item the same shape, so
``image_transform`` does the same resize and puts the image in the top-left corner of a
fixed 608x608 canvas, returning a (4, 608, 608) tensor: RGB, plus the pixel mask as
channel 3. ``score_pairs`` crops the batch back to its largest image and passes the mask, so
the model sees exactly what the ViLT processor would give it (padding is masked out of
attention). The alternative, squashing to 384x384, would change the aspect ratio and the
number of patches ViLT was fine-tuned with.

ViLT shuffles (and, past ``max_image_length``, samples) patches with ``torch.multinomial``;
scoring runs under a fixed, private RNG seed so the same inputs give the same scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from harness.core.errors import UserError
from harness.core.interfaces import LoadOptions, ModelKind, ModelMeta
from harness.models import hub
from harness.models.common import autocast

LONGER_PER_SHORTER = 1333 / 800   # ViLT / transformers ViltImageProcessor: MAX_LONGER_EDGE / MAX_SHORTER_EDGE
PATCH_SEED = 0                    # seed of ViLT's patch shuffling, fixed per call


class ViltCanvasTransform:
    """PIL -> (4, S, S): ViLT-processed RGB in the top-left of a zero canvas + pixel-mask channel.

    S is the largest side the processor can produce: int(1333/800 x shorter) rounded down to
    the size divisor (608 for ViLT's 384 / 32).
    """

    def __init__(self, image_processor):
        self.processor = image_processor
        shorter = int(image_processor.size["shortest_edge"])
        divisor = int(getattr(image_processor, "size_divisor", None) or 32)
        self.canvas = int(LONGER_PER_SHORTER * shorter) // divisor * divisor

    def __call__(self, image):
        import torch

        rgb = image if image.mode == "RGB" else image.convert("RGB")
        pixels = self.processor(images=rgb, do_pad=False, return_tensors="pt")["pixel_values"][0]
        _, h, w = pixels.shape
        if h > self.canvas or w > self.canvas:  # only with a processor config unlike ViLT's
            raise UserError(f"ViLT image processed to {h}x{w}, larger than the {self.canvas}px canvas")
        out = torch.zeros(4, self.canvas, self.canvas, dtype=pixels.dtype)
        out[:3, :h, :w] = pixels
        out[3, :h, :w] = 1
        return out

    def __repr__(self) -> str:
        return f"ViltCanvasTransform({self.canvas}x{self.canvas})"


def split_canvas(pixels):
    """(B, 4, S, S) canvas batch -> ((B, 3, h, w) pixels, (B, h, w) long mask), cropped to the
    largest image in the batch, as ViltImageProcessor pads a batch."""
    mask = pixels[:, 3] > 0.5
    rows, cols = mask.any(dim=2), mask.any(dim=1)
    h = int(rows.sum(dim=1).max()) if len(pixels) else 0
    w = int(cols.sum(dim=1).max()) if len(pixels) else 0
    return pixels[:, :3, :h, :w], mask[:, :h, :w].long()


class ViltRetrieval(hub.HubAdapter):
    """CrossEncoder: ``score_pairs`` -> (B,) ITM logits of ViLT's retrieval head."""

    def __init__(self, name: str, model, tokenizer, image_processor, options: LoadOptions, checkpoint: dict):
        super().__init__(name, model, tokenizer, options, checkpoint)
        self.max_tokens = int(model.config.max_position_embeddings)  # 40: ViLT's text positions
        self._transform = ViltCanvasTransform(image_processor)

    def image_transform(self):
        return self._transform

    def tokenize(self, texts: Sequence[str]) -> dict:
        return dict(self.tokenizer(list(texts), padding="longest", truncation=True, max_length=self.max_tokens,
                                   return_tensors="pt"))

    def score_pairs(self, pixels, texts: Sequence[str]):
        """(B, 4, S, S) canvases and B texts -> (B,) ITM logits of the aligned pairs."""
        return self._pooled(pixels, texts, self.model.rank_output)[:, 0].float()

    def joint_features(self, pixels, texts: Sequence[str]):
        """(B, D) pooler output: the [CLS] state, through ViLT's pooler, that its ITM head reads."""
        return self._pooled(pixels, texts).float()

    def _pooled(self, pixels, texts: Sequence[str], head=None):
        """The pooler output, or ``head`` of it (inside the same inference/autocast context)."""
        import torch

        if len(pixels) != len(texts):
            raise ValueError(f"{self.name}: {len(pixels)} images vs {len(texts)} texts")
        rgb, mask = split_canvas(pixels)
        tokens = hub.to_device(self.tokenize(texts), self.device)
        devices = [torch.device(self.device)] if str(self.device).startswith("cuda") else []
        with torch.inference_mode(), autocast(self.device, self.options.precision), \
                torch.random.fork_rng(devices=devices):
            torch.manual_seed(PATCH_SEED)
            out = self.model.vilt(**tokens, pixel_values=rgb.to(self.device, dtype=self._dtype),
                                  pixel_mask=mask.to(self.device))
            return out.pooler_output if head is None else head(out.pooler_output)


def load_vilt(name: str, hub_id: str | None, options: LoadOptions) -> ViltRetrieval:
    from transformers import ViltForImageAndTextRetrieval

    parts = hub.load_parts(name, hub_id, options, ("vilt",), lambda config: ViltForImageAndTextRetrieval)
    return ViltRetrieval(name, parts.model, parts.tokenizer, parts.processor, options, parts.checkpoint)


# ------------------------------------------------------------------------------ registry
# params: transformers' default ViltConfig (the B/32 hub config), 111,595,777 with the word
# embeddings (the ViLT paper's 87.4M leaves them out).

VILT_MODELS = (
    ("dandelin/vilt-b32-finetuned-coco", ("vilt", "vilt-coco"), "COCO"),
    ("dandelin/vilt-b32-finetuned-flickr30k", ("vilt-flickr30k",), "Flickr30k"),
)
VILT_PREFILTER = "ViT-B-32/openai"  # a CLIP of the same patch size and era; --prefilter overrides


def register(models) -> None:
    for hub_id, aliases, data in VILT_MODELS:
        models.register(hub_id, ModelMeta(
            name=hub_id, family="vilt", kind=ModelKind.CROSS, source=f"hf:{hub_id}",
            loader=partial(load_vilt, hub_id, hub_id), params=111_595_777, license="Apache-2.0",
            description=f"ViLT-B/32 retrieval fine-tuned on {data}; reranks {VILT_PREFILTER}'s top-k",
            aliases=aliases, prefilter=VILT_PREFILTER), aliases=aliases)
