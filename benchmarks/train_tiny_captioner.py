"""Train the embedded tiny captioner on the synthetic train split (the recipe behind the
shipped ``harness/weights/tiny-captioner-synth.*``).

Recipe: :func:`harness.models.tiny_captioner.build_net` (conv encoder 64 px -> 8 x 8 tokens,
2-layer pre-norm transformer decoder, width 96), teacher-forced cross-entropy over a
word-level vocabulary of the training captions, one random caption of each image per epoch,
AdamW, linear warm-up then cosine decay, seeded. The val CIDEr-D (greedy, Java-free PTB
tokenizer) of each epoch is printed; the last epoch is shipped with its card. The test figures
come from ``vlbench run --model tiny-captioner-synth --dataset synthetic --task captioning``.

Reproduce:
    .venv/bin/python benchmarks/train_tiny_captioner.py --epochs 12 --out harness/weights
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.core.interfaces import GenerateOptions, LoadOptions
from harness.datasets import DatasetRequest, resolve_dataset
from harness.datasets.base import TaskKind
from harness.metrics.captioning import evaluate_captions
from harness.models.tiny_captioner import SPECIALS, STEM, TinyCaptioner, build_net, words


def split(name: str):
    return resolve_dataset("synthetic").load(DatasetRequest(name, TaskKind.RETRIEVAL))


def pixels(images, transform) -> torch.Tensor:
    return torch.stack([transform(images.load(i)) for i in range(len(images))])


def references(data) -> list[list[str]]:
    refs = [[] for _ in range(len(data.images))]
    for c, i in zip(data.captions, data.caption_to_image):
        refs[i].append(c)
    return refs


def val_cider(model: TinyCaptioner, px: torch.Tensor, refs, n: int = 300) -> dict:
    model.model.eval()
    caps = []
    for b in range(0, n, 100):
        caps += model.generate(px[b:b + 100], GenerateOptions(max_new_tokens=23, num_beams=1))
    model.model.train()
    s = evaluate_captions(caps, refs[:n], ("bleu4", "cider"), "python")
    return {k: round(v, 2) for k, v in s.corpus.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="harness/weights")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train, val = split("train"), split("val")
    counts = collections.Counter(w for t in train.captions for w in words(t))
    vocab = SPECIALS + sorted(counts)
    max_len = max(len(words(t)) for t in train.captions) + 2
    config = {"width": args.width, "layers": 2, "heads": 4, "vocab_size": len(vocab), "max_len": max_len,
              "image_size": 64}
    net = build_net(config)
    model = TinyCaptioner(STEM, net, config, vocab, LoadOptions(), {})
    tf = model.image_transform()
    t0 = time.time()
    train_px, val_px = pixels(train.images, tf), pixels(val.images, tf)
    print(f"images loaded in {time.time() - t0:.0f}s; vocab {len(vocab)}, max_len {max_len}", flush=True)
    train_refs, val_refs = references(train), references(val)
    targets = [model.encode_captions(r) for r in train_refs]  # (5, max_len) per image
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * math.ceil(len(train_px) / args.batch_size)
    warm = 100
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    net.train()
    history = []
    for epoch in range(args.epochs):
        order = torch.randperm(len(train_px))
        total = 0.0
        for b in range(0, len(order), args.batch_size):
            idx = order[b:b + args.batch_size]
            ids = torch.stack([targets[i][random.randrange(len(train_refs[i]))] for i in idx.tolist()])
            logits = net(net.encode(train_px[idx]), ids[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        score = val_cider(model, val_px, val_refs)
        history.append({"epoch": epoch + 1, "loss": round(total / len(order), 4), **score})
        print(history[-1], f"{time.time() - t0:.0f}s", flush=True)
    out = Path(args.out)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / f"{STEM}.safetensors"))
    (out / f"{STEM}.json").write_text(json.dumps({"config": config, "vocab": vocab}, indent=1) + "\n")
    card = {"model": STEM, "architecture": config, "params": sum(p.numel() for p in net.parameters()),
            "data": "vlbench synthetic, train split (retrieval view: 5 captions per image)",
            "train_images": len(train_px),
            "recipe": {**vars(args), "warmup_steps": warm, "loss": "teacher-forced cross-entropy",
                       "caption_sampling": "one random reference per image per epoch"},
            "selection": "last epoch", "val_first_300_greedy_ptb_python": history[-1], "history": history,
            "script": "benchmarks/train_tiny_captioner.py"}
    (out / f"{STEM}.card.json").write_text(json.dumps(card, indent=1) + "\n")


if __name__ == "__main__":
    main()
