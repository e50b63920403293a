"""``vlbench fit``: train a fusion head on cached frozen-tower features, select on dev/val.

Recipe (fixed, seeded; per-model overrides in ``fusion.model.SPECS[...].recipe``):
* features of the frozen towers computed once per split and cached (``cache``);
* AdamW (betas 0.9/0.98, weight decay on matrices only), linear warm-up then cosine decay,
  every (image, caption) pair of the training split once per epoch, shuffled, seeded;
* late heads: symmetric InfoNCE with a learnable temperature (capped at 100, as CLIP);
  other captions of the same image in a batch are masked out, not counted as negatives;
* cross heads (early, xattn): binary cross-entropy over, per positive pair, three
  negatives: a caption the prefilter (the matching late head) ranks among the top
  ``hard_k`` for the image but is wrong, likewise an image for the caption, and the next
  in-batch caption (an easy negative); positives weighted x3 to balance. Mining with the
  prefilter gives the head exactly the confusions it must fix when it reranks that
  prefilter's top-k;
* selection: best epoch on the dev/val split -- late: RSUM of retrieval; cross: RSUM of
  retrieval after reranking the prefilter's top ``rerank_k`` (R@10 then equals the
  prefilter's when rerank_k = 10) -- measured again from the fp16 weights that are saved.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.core import progress
from harness.core.errors import OptionError
from harness.models.fusion import model as FU
from harness.models.fusion.heads import HeadConfig, build_head, index_features
from harness.models.fusion.towers import load_towers
from harness.training import fusion_eval as E
from harness.training.fusion_data import load_split
from harness.training.fusion_features import split_features, split_slices


@dataclass(frozen=True)
class FitOptions:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    seed: int = 0
    hard_k: int = 8             # cross: negatives drawn from the prefilter's top-k wrong items
    rerank_k: int = 10          # cross: selection reranks the prefilter's top-k
    max_train_images: int | None = None  # whole-family subset of the training split
    max_select_images: int | None = None  # likewise of the selection split (tests; default all)
    extract_batch_size: int = 64

    def __post_init__(self):
        for name in ("epochs", "batch_size", "hard_k", "rerank_k", "extract_batch_size"):
            if getattr(self, name) <= 0:
                raise OptionError(f"fit option {name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise OptionError(f"fit option lr must be positive, got {self.lr}")


def default_options(spec: FU.FusionSpec, **overrides) -> FitOptions:
    """The shipped recipe of a registered model, with explicit overrides (None = keep)."""
    base = replace(FitOptions(max_train_images=spec.max_train_images), **spec.recipe)
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


# ------------------------------------------------------------------------------ training

def optimizer(head, lr: float, weight_decay: float, warmup_steps: int, total_steps: int):
    """AdamW (weight decay on matrices only) with linear warm-up then cosine decay: the recipe
    of every fusion fit (matching here, classification in ``classifier_fit``)."""
    decay = [p for p in head.parameters() if p.ndim >= 2]
    rest = [p for p in head.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    warm = max(1, min(warmup_steps, total_steps // 4))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (
        1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
    return opt, sched


def late_loss(head, img: dict, txt: dict, c2i, caps):
    images = c2i[caps]
    logits = head.logit_scale.exp() * head.encode_image(index_features(img, images)) @ \
        head.encode_text(index_features(txt, caps)).T
    same = (images[:, None] == images[None, :]) & ~torch.eye(len(caps), dtype=torch.bool)
    logits = logits.masked_fill(same, float("-inf"))  # another caption of the same image is no negative
    target = torch.arange(len(caps))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def cross_loss(head, img: dict, txt: dict, c2i, caps, negatives: dict, gen):
    images = c2i[caps]
    b, k = len(caps), negatives["caption_of_image"].shape[1]
    neg_caps = negatives["caption_of_image"][images, torch.randint(k, (b,), generator=gen)]
    neg_imgs = negatives["image_of_caption"][caps, torch.randint(k, (b,), generator=gen)]
    img_rows, txt_rows = torch.cat([images, neg_imgs]), torch.cat([caps, neg_caps])
    pi = head.prepare_image(index_features(img, img_rows))
    pt = head.prepare_text(index_features(txt, txt_rows))
    a = torch.arange(b)
    pair_img = torch.cat([a, a, b + a, a])              # positive, hard text, hard image, easy text
    pair_txt = torch.cat([a, b + a, a, a.roll(1)])
    logits = head.score(index_features(pi, pair_img), index_features(pt, pair_txt))
    labels = (c2i[txt_rows[pair_txt]] == img_rows[pair_img]).float()
    return F.binary_cross_entropy_with_logits(logits, labels, pos_weight=torch.tensor(3.0))


@torch.no_grad()
def mine_negatives(pre_img, pre_txt, c2i, k: int, chunk: int = 1024) -> dict:
    """Per image, the k wrong captions the prefilter likes best; per caption, the k wrong images."""
    k_txt = min(k, max(1, len(pre_txt) - int(torch.bincount(c2i).max())))
    k_img = min(k, len(pre_img) - 1)
    cap_of_img, img_of_cap = [], []
    for s in range(0, len(pre_img), chunk):
        rows = torch.arange(s, min(s + chunk, len(pre_img)))
        sim = (pre_img[rows] @ pre_txt.T).masked_fill(c2i[None, :] == rows[:, None], float("-inf"))
        cap_of_img.append(sim.topk(k_txt, dim=1).indices)
    for s in range(0, len(pre_txt), chunk):
        rows = torch.arange(s, min(s + chunk, len(pre_txt)))
        sim = pre_txt[rows] @ pre_img.T
        sim[torch.arange(len(rows)), c2i[rows]] = float("-inf")
        img_of_cap.append(sim.topk(k_img, dim=1).indices)
    return {"caption_of_image": torch.cat(cap_of_img), "image_of_caption": torch.cat(img_of_cap)}


def _selection(head, pre, feats, c2i, opts: FitOptions) -> dict:
    img, txt = feats
    if head.cfg.kind == "late":
        return E.dual_metrics(*E.late_embeddings(head, img, txt), c2i)
    return E.rerank_metrics(pre[0], pre[1], c2i, E.pair_scorer(head, img, txt), opts.rerank_k)


def _hard_negatives(head, pre, feats, data) -> dict:
    pairs = data.info.get("hard_negative_pairs")
    if not pairs:
        return {}
    img, txt = feats
    if head.cfg.kind == "late":
        from harness.tasks.hard_negatives import hard_negative_accuracy

        return E.rounded(hard_negative_accuracy(*E.late_embeddings(head, img, txt), data.caption_to_image, pairs))
    return E.cross_hard_negatives(E.pair_scorer(head, img, txt), len(img["pooled"]), data.caption_to_image, pairs)


def _prefilter_head(spec: FU.FusionSpec, towers_spec, weights: str | None, log):
    """The late head whose embeddings mine negatives and prefilter (same towers required);
    checked before any feature is computed, so a missing prefilter fails at once."""
    path = Path(weights) if weights else FU.checkpoint_path(spec.prefilter)
    if not path.is_file():
        raise FileNotFoundError(f"{spec.name}: its prefilter checkpoint {path} is missing; fit "
                                f"{spec.prefilter} first (or pass --prefilter-weights PATH)")
    head, pre_towers = FU.load_head(path, spec.prefilter)
    if head.cfg.kind != "late" or pre_towers != towers_spec:
        raise OptionError(f"{spec.name}: prefilter {path} must be a late head over the same towers "
                         f"({towers_spec}), got a {head.cfg.kind} head over {pre_towers}")
    log(f"prefilter {spec.prefilter}: {path}")
    return head, str(path)


def _epoch(head, train_feats, c2i, negatives, opt, sched, opts: FitOptions, gen, bar) -> float:
    """One pass over every training pair, shuffled; the mean loss. ``negatives``: cross heads' mined ones."""
    head.train()
    steps = math.ceil(len(c2i) / opts.batch_size)
    order, total = torch.randperm(len(c2i), generator=gen), 0.0
    for s in range(steps):
        caps = order[s * opts.batch_size:(s + 1) * opts.batch_size]
        loss = late_loss(head, *train_feats, c2i, caps) if head.cfg.kind == "late" else \
            cross_loss(head, *train_feats, c2i, caps, negatives, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if head.cfg.kind == "late":
            with torch.no_grad():
                head.logit_scale.clamp_(0, math.log(100))
        total += loss.item()
        bar.update(1)
    return total / steps


def fit(spec: FU.FusionSpec, dataset: str, split: str, select_split: str, out: Path, opts: FitOptions,
        data_root: str | None = None, prefilter_weights: str | None = None, towers=None,
        command: str = "", log=print) -> dict:
    """Train ``spec``'s head; write ``out/<name>.safetensors`` and its card; return the card."""
    started = time.perf_counter()
    towers_spec = towers.spec if towers is not None else spec.towers
    pre_head, pre_path = _prefilter_head(spec, towers_spec, prefilter_weights, log) if spec.head != "late" \
        else (None, None)
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    train = load_split(dataset, split, data_root, opts.max_train_images, opts.seed)
    select = load_split(dataset, select_split, data_root, opts.max_select_images, opts.seed)
    towers = towers or load_towers(spec.towers)
    flog = lambda m: log(f"features: {m}")
    feats = [split_slices(split_features(towers, d, opts.extract_batch_size, flog)) for d in (train, select)]
    feature_s = time.perf_counter() - started
    c2i_train, c2i_select = torch.as_tensor(train.caption_to_image), torch.as_tensor(select.caption_to_image)
    cfg = HeadConfig(kind=spec.head, image_dim=towers.image_dim, text_dim=towers.text_dim,
                     grid_tokens=feats[0][0]["grid"].shape[1], text_tokens=towers.spec.text_max_tokens,
                     **spec.head_options)
    head = build_head(cfg)
    pre, negatives = [None, None], None
    if pre_head is not None:
        pre = [E.late_embeddings(pre_head, img, txt) for img, txt in feats]
        negatives = mine_negatives(*pre[0], c2i_train, opts.hard_k)
    steps = math.ceil(len(c2i_train) / opts.batch_size)
    opt, sched = optimizer(head, opts.lr, opts.weight_decay, opts.warmup_steps, steps * opts.epochs)
    history = [{"epoch": 0, "select": _selection(head, pre[1], feats[1], c2i_select, opts)}]  # the init
    best, best_state = -1.0, None
    # one bar over every step of the fit: its ETA is the whole training's (selection passes excluded)
    with progress.bar(f"fit {spec.name}", steps * opts.epochs, unit="step") as bar:
        for epoch in range(1, opts.epochs + 1):
            bar.set_description(f"fit {spec.name} epoch {epoch}/{opts.epochs}")
            loss = _epoch(head, feats[0], c2i_train, negatives, opt, sched, opts, gen, bar)
            metrics = _selection(head, pre[1], feats[1], c2i_select, opts)
            line = {"epoch": epoch, "loss": round(loss, 4), "select": metrics,
                    "elapsed_s": round(time.perf_counter() - started)}
            if metrics["rsum"] > best:
                best, best_state, line["selected"] = metrics["rsum"], {k: v.clone() for k, v in head.state_dict().items()}, True
            history.append(line)
            log(json.dumps(line))
    # what ships is fp16: select metrics are measured again from the rounded weights
    head.load_state_dict({k: v.half().float() for k, v in best_state.items()})
    head.eval()
    out = Path(out)
    ckpt = out / f"{spec.name}.safetensors"
    FU.save_checkpoint(ckpt, head, towers.spec)
    card = {
        "model": spec.name, "family": "fusion", "kind": spec.kind.value, "head": cfg.to_dict(),
        "head_params": sum(p.numel() for p in head.parameters()), "towers": towers.spec.to_dict(),
        "tower_checkpoints": towers.checkpoint,
        "data": {"dataset": dataset, "split": split, "images": len(train.images), "captions": len(train.captions),
                 "fingerprint": train.fingerprint, "subset": train.info.get("subset")},
        "select": {"dataset": dataset, "split": select_split, "images": len(select.images),
                   "captions": len(select.captions), "fingerprint": select.fingerprint,
                   "metric": "rsum" if spec.head == "late" else f"rsum after reranking the prefilter's top {opts.rerank_k}"},
        "prefilter": {"model": spec.prefilter, "checkpoint": pre_path} if spec.prefilter else None,
        "recipe": asdict(opts), "recipe_doc": "harness/training/fusion_fit.py (module docstring)",
        "selected_epoch": max((h for h in history if h.get("selected")), key=lambda h: h["epoch"])["epoch"],
        "select_metrics": _selection(head, pre[1], feats[1], c2i_select, opts),
        "select_hard_negatives": _hard_negatives(head, pre[1], feats[1], select),
        "history": history, "feature_seconds": round(feature_s, 1),
        "train_seconds": round(time.perf_counter() - started - feature_s, 1),
        "command": command, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__, "checkpoint": ckpt.name,
    }
    tmp = FU.card_path(ckpt).with_name(f".{ckpt.stem}.card.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, FU.card_path(ckpt))
    return card


# --------------------------------------------------------------------------------- CLI

def _select_split(dataset: str, spec: FU.FusionSpec) -> str:
    from harness.datasets import resolve_dataset

    if dataset == spec.dataset:
        return spec.select_split
    splits = resolve_dataset(dataset).splits
    for name in ("val", "dev"):
        if name in splits:
            return name
    raise OptionError(f"dataset {dataset!r} has no val/dev split; pass --select-split")


def fit_command(spec: FU.FusionSpec, args) -> dict:
    """``vlbench fit``: resolve defaults, train, print the card's headline; the card records
    the full command with every recipe value spelled out, so it re-creates the checkpoint."""
    from harness.datasets import resolve_dataset

    dataset = resolve_dataset(args.dataset or spec.dataset).name  # a registered name, or jsonl:DIR
    select = args.select_split or _select_split(dataset, spec)
    if select == args.split:
        raise OptionError(f"--select-split {select} is the training split; choose a held-out split")
    opts = default_options(spec, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           max_train_images=args.max_train_images)
    from harness.results.store import results_dir

    out = Path(args.out) if args.out else results_dir(None) / "fits"
    command = (f"vlbench fit {spec.name} --dataset {dataset} --split {args.split} --select-split {select} "
               f"--out {out} --epochs {opts.epochs} --batch-size {opts.batch_size} --lr {opts.lr} "
               f"--seed {opts.seed}" + (f" --max-train-images {opts.max_train_images}" if opts.max_train_images else "")
               + (f" --prefilter-weights {args.prefilter_weights}" if args.prefilter_weights else "")
               + (f" --data-root {args.data_root}" if args.data_root else ""))
    card = fit(spec, dataset, args.split, select, out, opts, data_root=args.data_root,
               prefilter_weights=args.prefilter_weights, command=command,
               log=progress.echo)
    print(f"{spec.name}: epoch {card['selected_epoch']} selected on {dataset}/{select}: "
          f"{json.dumps(card['select_metrics'])} -> {out / card['checkpoint']}", flush=True)
    return card
