"""Train the embedded tiny CLIP on the synthetic train split (the recipe behind the shipped
``harness/weights/tiny-clip-synth.*``).

Recipe: an open_clip CLIP (ViT 64px/8px patches, 4 layers, width 128; text transformer 3
layers, width 128, vocabulary cut to the tokens of the training captions), symmetric InfoNCE
with a learnable temperature (CLIP, Radford et al. 2021), AdamW, linear warm-up then cosine
decay, one random caption of each image per epoch, seeded. Selected on val RSUM.

Reproduce (about 15 minutes on 2 CPU cores):
    .venv/bin/python benchmarks/train_tiny_clip.py --epochs 30 --out harness/weights
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

STEM = "tiny-clip-synth"


def model_config(vocab_size: int, context_length: int) -> dict:
    return {
        "embed_dim": 128,
        "vision_cfg": {"image_size": 64, "layers": 4, "width": 128, "head_width": 32, "mlp_ratio": 2.0,
                       "patch_size": 8},
        "text_cfg": {"context_length": context_length, "vocab_size": vocab_size, "width": 128, "heads": 4,
                     "layers": 3, "mlp_ratio": 2.0},
    }


def pixels(images, transform) -> torch.Tensor:
    return torch.stack([transform(images.load(i)) for i in range(len(images))])


def evaluate(model, tokenizer, px: torch.Tensor, data) -> dict:
    from harness.metrics import functional as M

    model.eval()
    with torch.inference_mode():
        img = torch.cat([F.normalize(model.encode_image(px[i:i + 512]), dim=-1) for i in range(0, len(px), 512)])
        caps = data.captions
        txt = torch.cat([F.normalize(model.encode_text(tokenizer(caps[i:i + 512])), dim=-1)
                         for i in range(0, len(caps), 512)])
    t2i, i2t = M.retrieval_ranks(img, txt, torch.as_tensor(data.caption_to_image))
    model.train()
    return {k.value: round(float(v), 2) for k, v in M.metrics_from_ranks(t2i, i2t).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--warmup-steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--context-length", type=int, default=32)
    ap.add_argument("--eval-every", type=int, default=2, help="epochs between val evaluations")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default="harness/weights")
    args = ap.parse_args()

    import open_clip
    from safetensors.torch import save_file

    from harness.datasets import DatasetRequest, TaskKind, synthetic
    from harness.models.clip import CompactTokenizer

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load = lambda split: synthetic.load(DatasetRequest(split, TaskKind.RETRIEVAL, cache_dir=args.cache_dir))
    train, val, test = load("train"), load("val"), load("test")

    kept = CompactTokenizer.kept_from_corpus(train.captions)
    cfg = model_config(len(kept) + 4, args.context_length)
    cfg_path = out / f"{STEM}.json"
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
    (out / f"{STEM}.tokens.json").write_text(json.dumps({"kept_ids": kept}) + "\n")
    open_clip.add_model_config(cfg_path)
    model, _, preprocess = open_clip.create_model_and_transforms(STEM)
    tokenizer = CompactTokenizer(kept, args.context_length)
    print(f"params {sum(p.numel() for p in model.parameters()):,}; vocab {cfg['text_cfg']['vocab_size']}")

    t0 = time.time()
    train_px, val_px, test_px = pixels(train.images, preprocess), pixels(val.images, preprocess), \
        pixels(test.images, preprocess)
    by_image: list[list[int]] = [[] for _ in range(len(train.images))]
    for j, i in enumerate(train.caption_to_image):
        by_image[i].append(j)
    print(f"data ready in {time.time() - t0:.1f}s: train {len(train_px)} images")

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    steps_per_epoch = len(train_px) // args.batch_size
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / args.warmup_steps) * 0.5 *
                                              (1 + math.cos(math.pi * min(s, total) / total)))
    best, best_state, history = -1.0, None, []
    model.train()
    for epoch in range(1, args.epochs + 1):
        order = torch.randperm(len(train_px)).tolist()
        seen_loss = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * args.batch_size:(step + 1) * args.batch_size]
            texts = [train.captions[rng.choice(by_image[i])] for i in idx]
            img = F.normalize(model.encode_image(train_px[idx]), dim=-1)
            txt = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
            logits = model.logit_scale.exp() * img @ txt.T
            target = torch.arange(len(idx))
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))  # CLIP's cap on the temperature
            seen_loss += loss.item()
        line = {"epoch": epoch, "loss": round(seen_loss / steps_per_epoch, 4),
                "temperature": round(1 / model.logit_scale.exp().item(), 4), "elapsed_s": round(time.time() - t0)}
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            line["val"] = evaluate(model, tokenizer, val_px, val)
            if line["val"]["rsum"] > best:
                best = line["val"]["rsum"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                line["selected"] = True
        history.append(line)
        print(json.dumps(line), flush=True)

    model.load_state_dict(best_state)
    # fp16 on disk halves the file; the shipped numbers below are measured from these weights.
    save_file({k: v.half().contiguous() for k, v in best_state.items()}, str(out / f"{STEM}.safetensors"))
    model.load_state_dict({k: v.half().float() for k, v in best_state.items()})
    card = {
        "model": STEM, "architecture": cfg, "params": sum(p.numel() for p in model.parameters()),
        "data": "vlbench synthetic, train split (retrieval view)", "train_images": len(train_px),
        "recipe": {k: v for k, v in vars(args).items() if k not in ("out", "cache_dir")},
        "selection": "best val RSUM", "val": evaluate(model, tokenizer, val_px, val),
        "test": evaluate(model, tokenizer, test_px, test), "train_seconds": round(time.time() - t0),
        "torch": torch.__version__, "open_clip": open_clip.__version__,
        "command": "python benchmarks/train_tiny_clip.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("cache_dir",)),
        "history": history,
    }
    (out / f"{STEM}.card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps({"val": card["val"], "test": card["test"]}))


if __name__ == "__main__":
    main()
