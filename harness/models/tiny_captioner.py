"""The embedded tiny captioner (``tiny-captioner-synth``, and ``tiny-captioner-random``, its
untrained network as the chance reference): a small convolutional image encoder (64 px ->
an 8 x 8 grid of feature tokens) and a 2-layer transformer decoder attending to them, over a
word-level vocabulary of the synthetic training captions. Trained by
``benchmarks/train_tiny_captioner.py``; shipped as ``harness/weights/tiny-captioner-synth.*``
(config + vocabulary json, safetensors weights, card).

Decoding goes through :mod:`harness.models.decoding` (the decoder is re-run over the prefix:
at <= 24 tokens over 64 image tokens a KV cache would save little here).
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

from harness.core.interfaces import GenerateOptions, LoadOptions, ModelKind, ModelMeta, WeightsUnavailableError
from harness.models import weights as W

STEM = "tiny-captioner-synth"
PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
WORD = re.compile(r"[a-z0-9]+|,")


def words(text: str) -> list[str]:
    """Lower-case words and commas, the units of the vocabulary.

    >>> words("A small, yellow Diamond")
    ['a', 'small', ',', 'yellow', 'diamond']
    """
    return WORD.findall(text.lower())


def detokenize(tokens: list[str]) -> str:
    """Words back to a caption, commas attached.

    >>> detokenize(['a', 'small', ',', 'yellow'])
    'a small, yellow'
    """
    return " ".join(tokens).replace(" ,", ",")


def build_net(cfg: dict):
    """The network for a config: ``width``, ``layers``, ``heads``, ``vocab_size``, ``max_len``, ``image_size``."""
    import torch
    from torch import nn

    class TinyCaptionerNet(nn.Module):
        def __init__(self, c: dict):
            super().__init__()
            w = c["width"]
            self.encoder = nn.Sequential(  # 64 -> 32 -> 16 -> 8
                nn.Conv2d(3, w // 4, 3, 2, 1), nn.GELU(), nn.Conv2d(w // 4, w // 2, 3, 2, 1), nn.GELU(),
                nn.Conv2d(w // 2, w, 3, 2, 1), nn.GELU())
            grid = c["image_size"] // 8
            self.image_pos = nn.Parameter(torch.zeros(grid * grid, w))
            self.embed = nn.Embedding(c["vocab_size"], w)
            self.text_pos = nn.Parameter(torch.zeros(c["max_len"], w))
            layer = nn.TransformerDecoderLayer(w, c["heads"], 2 * w, dropout=0.0, batch_first=True, norm_first=True)
            self.decoder = nn.TransformerDecoder(layer, c["layers"])
            self.norm = nn.LayerNorm(w)
            self.head = nn.Linear(w, c["vocab_size"])

        def encode(self, pixels):
            feats = self.encoder(pixels)                        # (B, w, 8, 8)
            return feats.flatten(2).transpose(1, 2) + self.image_pos

        def forward(self, memory, ids):
            length = ids.shape[1]
            x = self.embed(ids) + self.text_pos[:length]
            mask = nn.Transformer.generate_square_subsequent_mask(length, device=ids.device)
            x = self.decoder(x, memory, tgt_mask=mask, tgt_is_causal=True)
            return self.head(self.norm(x))

    return TinyCaptionerNet(cfg)


class TinyCaptioner:
    """Captioner over :func:`build_net`; ``vocab`` maps ids to words."""

    def __init__(self, name: str, net, config: dict, vocab: list[str], options: LoadOptions, checkpoint: dict):
        self.name, self.model, self.config, self.vocab = name, net.eval(), config, vocab
        self.options, self.device, self.checkpoint = options, options.device, checkpoint
        self.index = {w: i for i, w in enumerate(vocab)}
        self.last_generated_tokens = 0

    def image_transform(self):
        from torchvision import transforms

        size = self.config["image_size"]
        return transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
                                   transforms.Normalize([0.5] * 3, [0.5] * 3)])

    def encode_captions(self, texts: list[str]):
        """Teacher-forcing targets: (B, max_len) ids, BOS ... EOS, padded (training)."""
        import torch

        n = self.config["max_len"]
        out = torch.full((len(texts), n), PAD, dtype=torch.long)
        for r, t in enumerate(texts):
            ids = [BOS, *(self.index.get(w, UNK) for w in words(t))][: n - 1] + [EOS]
            out[r, : len(ids)] = torch.tensor(ids)
        return out

    def generate(self, pixels, options: GenerateOptions) -> list[str]:
        import torch

        from harness.models.decoding import decode

        cap = GenerateOptions(min(options.max_new_tokens, self.config["max_len"] - 1), options.num_beams,
                              options.do_sample, options.batch_size)
        with torch.inference_mode():
            memory = self.model.encode(pixels.to(self.device))
            rows = decode(partial(self._logprobs, memory), len(pixels), BOS, EOS, cap, self.device)
        self.last_generated_tokens = sum(len(r) for r in rows)
        return [detokenize([self.vocab[i] for i in r if i not in (PAD, BOS, EOS)]) for r in rows]

    def _logprobs(self, memory, prefix, rows):
        import torch

        mem = memory if rows is None else memory[rows.to(memory.device)]
        return torch.log_softmax(self.model(mem, prefix.to(mem.device))[:, -1].float(), dim=-1)


def files(stem: str, random_init: bool, weights: str | None) -> list[Path]:
    cfg = W.SHIPPED_DIR / f"{stem}.json"
    if random_init:
        return [cfg]
    return [cfg, Path(weights).expanduser() if weights else W.SHIPPED_DIR / f"{stem}.safetensors"]


def load(name: str, stem: str, random_init: bool, options: LoadOptions) -> TinyCaptioner:
    import torch

    paths = files(stem, random_init, options.weights)
    for p in paths:
        if not p.is_file():
            mine = options.weights and p == paths[-1] and not random_init  # the user's file, not a shipped one
            raise WeightsUnavailableError(f"{name}: --weights {p}: no such file" if mine else
                                          f"{name}: missing {p}; re-create it with benchmarks/train_tiny_captioner.py")
    meta = json.loads(paths[0].read_text())
    torch.manual_seed(0)  # the random-init reference is the same network every time
    net = build_net(meta["config"])
    if not random_init:
        state = {k: v.float() for k, v in W.load_safetensors(paths[1], name).items()}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsUnavailableError(f"{name}: checkpoint {paths[1]} does not fit {stem}: "
                                          f"{str(exc).splitlines()[0]}") from None
    checkpoint = {"id": "random-init(seed=0)" if random_init else str(paths[1]),
                  "sha256": None if random_init else W.file_digest(paths[1])}
    return TinyCaptioner(name, net.to(options.device), meta["config"], meta["vocab"], options, checkpoint)


def register(models) -> None:
    for name, random_init, desc in (
        ("tiny-captioner-synth", False, "tiny conv encoder + transformer decoder captioner trained on synthetic"),
        ("tiny-captioner-random", True, "the same tiny captioner, random init (seed 0): the chance reference"),
    ):
        models.register(name, ModelMeta(
            name=name, family="tiny-captioner", kind=ModelKind.CAPTIONER,
            source=f"vlbench:harness/weights/{STEM}" + (" (random init)" if random_init else ""),
            loader=partial(load, name, STEM, random_init), license="Apache-2.0 (vlbench)", description=desc,
            offline=True, local_files=partial(files, STEM, random_init)))
