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

from harness.core.interfaces import GenerateOptions, LoadOptions, ModelKind, ModelMeta
from harness.models.clip import OpenClipDualEncoder, OpenClipSource, load_open_clip
from harness.models.common import autocast

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
            decode = self._beam if options.num_beams > 1 and not options.do_sample else self._stepwise
            rows = decode(images, latent, embs, options)
        self.last_generated_tokens = sum(len(r) for r in rows)
        texts = [open_clip.decode(torch.tensor([SOT, *r])) for r in rows]
        return [" ".join(t.split("<end_of_text>")[0].replace("<start_of_text>", "").split()) for t in texts]

    def _logprobs(self, images, latent, embs, text):
        import torch

        logits = self.model(images, text, image_latent=latent, image_embs=embs, output_labels=False)["logits"][:, -1]
        return torch.log_softmax(logits.float(), dim=-1)

    def _stepwise(self, images, latent, embs, options: GenerateOptions) -> list[list[int]]:
        """Greedy (argmax) or sampling, one token per step; a row stops at its end token."""
        import torch

        text = torch.full((len(images), 1), SOT, dtype=torch.long, device=images.device)
        rows: list[list[int]] = [[] for _ in range(len(images))]
        live = torch.ones(len(images), dtype=torch.bool, device=images.device)
        for _ in range(options.max_new_tokens):
            logp = self._logprobs(images, latent, embs, text)
            nxt = torch.multinomial(logp.exp(), 1)[:, 0] if options.do_sample else logp.argmax(-1)
            for i in live.nonzero()[:, 0].tolist():
                rows[i].append(int(nxt[i]))
            live &= nxt != EOT
            text = torch.cat([text, nxt[:, None]], 1)
            if not live.any():
                break
        return rows

    def _beam(self, images, latent, embs, options: GenerateOptions) -> list[list[int]]:
        return [self._beam_one(images[i:i + 1], latent[i:i + 1], embs[i:i + 1], options) for i in range(len(images))]

    def _beam_one(self, image, latent, embs, options: GenerateOptions) -> list[int]:
        """Beam search for one image: keep ``num_beams`` open prefixes; a prefix ending in EOT
        is finished; the best finished (or open, at the cap) by mean log-probability."""
        import torch

        k = options.num_beams
        beams: list[tuple[list[int], float]] = [([], 0.0)]
        done: list[tuple[list[int], float]] = []
        for _ in range(options.max_new_tokens):
            text = torch.tensor([[SOT, *b] for b, _ in beams], device=image.device)
            n = len(beams)
            logp = self._logprobs(image.expand(n, *image.shape[1:]), latent.expand(n, *latent.shape[1:]),
                                  embs.expand(n, *embs.shape[1:]), text)
            top = logp.topk(k, dim=-1)
            cands = sorted(((b + [int(t)], s + float(v)) for (b, s), vs, ts in zip(beams, top.values, top.indices)
                            for v, t in zip(vs, ts)), key=lambda c: -c[1])
            beams = []
            for seq, score in cands:
                (done if seq[-1] == EOT else beams).append((seq, score))
                if len(beams) == k:
                    break
            if len(done) >= k or not beams:
                break
        pool = done or beams
        return max(pool, key=lambda c: c[1] / len(c[0]))[0]


def load_coca(name: str, arch: str, tag: str | None, options: LoadOptions) -> CocaModel:
    enc = load_open_clip(name, OpenClipSource(arch, tag), options)
    return CocaModel(name, enc.model, enc._preprocess, enc._tokenizer, options, enc.checkpoint)


COCA_MODELS = (
    # (arch, pretrained tag, aliases)
    ("coca_ViT-B-32", "mscoco_finetuned_laion2b_s13b_b90k", ("coca-vit-b-32-coco",)),
    ("coca_ViT-B-32", "laion2b_s13b_b90k", ("coca-vit-b-32",)),
)


def register(models) -> None:
    from functools import partial

    for arch, tag, aliases in COCA_MODELS:
        name = f"{arch}/{tag}"
        models.register(name, ModelMeta(
            name=name, family="open_clip-coca", kind=ModelKind.DUAL, also=(ModelKind.CAPTIONER,),
            source=f"open_clip:{name}", loader=partial(load_coca, name, arch, tag),
            license="MIT (OpenCLIP); data: LAION-2B" + (", COCO" if "mscoco" in tag else ""),
            description="CoCa: contrastive dual encoder and caption decoder", aliases=aliases), aliases=aliases)
