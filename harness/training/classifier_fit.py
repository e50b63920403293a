"""``vlbench fit MODEL --task image_text_classification --dataset D``: a fusion design's head
(late, early, xattn over the model's frozen towers) with a label output layer
(:mod:`harness.models.fusion.classifier`), trained end to end on D's train split.

Recipe (fixed, seeded; ``ClassifierFitOptions``):

* the towers' features of every distinct image and text of train, computed once and cached by
  content (:mod:`harness.training.classifier_data`); the towers stay frozen, the head trains;
* a seeded, stratified held-out part of train (20%, whole ``holdout_groups`` -- items sharing
  an image or a scene -- on one side), never the evaluation split; the head trains on the rest;
* loss: softmax cross-entropy for binary and multi-class data, one sigmoid + binary
  cross-entropy per label for multi-label data;
* AdamW (betas 0.9/0.98, weight decay on matrices only), linear warm-up then cosine decay,
  minibatches of shuffled items, seeded (init, order, dropout);
* hyper-parameters: the learning rate from a small grid, each run for ``epochs``; after every
  epoch the head is scored on the held-out part; the (learning rate, epoch) with the best
  held-out ``macro_f1`` (the task's main metric) wins, ties going to the lower held-out loss,
  then to the earlier candidate. Multi-label: each label's decision threshold is chosen on the
  held-out part at every epoch (:func:`harness.metrics.multimodal_cls.best_threshold`, the
  probe's rule), and its macro-F1 at those thresholds is what is compared;
* the weights saved are the chosen epoch's, from the run on the fitted part -- no refit on
  all of train. Why: the held-out figures in the card (and a multi-label head's thresholds,
  chosen on held-out scores) then describe exactly the weights that ship; a refit would
  silently invalidate both (its thresholds would be chosen on items it was trained on) and
  doubles the cost. The price is 20% fewer training items, which early stopping on a held-out
  part always pays (the linear probe, a convex fit, refits instead).
* what ships is fp16; the held-out figures (and thresholds) are measured again from the
  rounded weights.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.core import progress
from harness.core.errors import OptionError
from harness.models.fusion import model as FU
from harness.models.fusion.classifier import FusionClassifier, LabelSpace
from harness.models.fusion.heads import HeadConfig, index_features
from harness.models.fusion.towers import load_towers
from harness.training import classifier_data as D
from harness.training.fusion_fit import optimizer

SELECTION = ("held-out macro_f1 (multi-label: at per-label thresholds chosen on the held-out part); "
             "ties: lower held-out loss, then the earlier learning rate / epoch")


@dataclass(frozen=True)
class ClassifierFitOptions:
    epochs: int = 10
    batch_size: int = 64
    lrs: tuple[float, ...] = (1e-3, 3e-3)  # the learning-rate grid searched on held-out train
    weight_decay: float = 0.05
    warmup_steps: int = 20
    seed: int = 0
    holdout: float = 0.2          # share of train held out for choosing the learning rate and epoch
    limit: int | None = None      # a seeded subset of train items (tests, quick looks)
    extract_batch_size: int = 64
    # a matching checkpoint of the same design whose trunk (everything but its match output)
    # starts the classifier, instead of the seeded random init; the label layer starts fresh
    init: str | None = None

    def __post_init__(self):
        for name in ("epochs", "batch_size", "extract_batch_size"):
            if getattr(self, name) <= 0:
                raise OptionError(f"fit option {name} must be positive, got {getattr(self, name)}")
        if not self.lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in self.lrs):
            raise OptionError(f"fit option lr must be positive, got {list(self.lrs)}")
        if not 0 < self.holdout < 1:
            raise OptionError(f"fit option holdout must be between 0 and 1, got {self.holdout}")
        if self.limit is not None and self.limit <= 0:
            raise OptionError(f"--limit must be positive, got {self.limit}")
        if self.weight_decay < 0 or self.warmup_steps < 0:
            raise OptionError("fit options weight_decay and warmup_steps must be 0 or more")


# ---------------------------------------------------------------------------- batches

class ItemFeatures:
    """Tower features of the train items: rows of distinct images / texts, gathered per item."""

    def __init__(self, feats: dict):
        self.img = {"pooled": feats["image.pooled"], "grid": feats["image.grid"]}
        self.txt = {"pooled": feats["text.pooled"], "tokens": feats["text.tokens"], "mask": feats["text.mask"]}
        self.item_image, self.item_text = feats["item_image"], feats["item_text"]

    def logits(self, clf: FusionClassifier, items: torch.Tensor) -> torch.Tensor:
        img = index_features(self.img, self.item_image[items])
        txt = index_features(self.txt, self.item_text[items])
        return clf(img, txt)


def _loss(logits, y, multilabel: bool):
    return F.binary_cross_entropy_with_logits(logits, y) if multilabel else F.cross_entropy(logits, y)


@torch.no_grad()
def held_out(clf: FusionClassifier, feats: ItemFeatures, items: torch.Tensor, y, labels: LabelSpace,
             chunk: int = 512) -> tuple[dict, LabelSpace]:
    """The head's held-out figures (percent; ``loss``) and the label space it decides with
    (multi-label: thresholds chosen here)."""
    from harness.metrics.multimodal_cls import best_threshold, multilabel_metrics, single_label_metrics
    from harness.models.fusion.classifier import decide

    was = clf.training
    clf.eval()
    logits = torch.cat([feats.logits(clf, items[s:s + chunk]) for s in range(0, len(items), chunk)])
    clf.train(was)
    yt = y[items]
    loss = float(_loss(logits, yt, labels.multilabel))
    if labels.multilabel:
        probs = logits.double().sigmoid().numpy()
        th = tuple(best_threshold(probs[:, k], yt[:, k].numpy()) for k in range(probs.shape[1]))
        labels = replace(labels, thresholds=th)
        m = multilabel_metrics(yt.numpy().astype(bool), decide(logits, labels)["indicators"])
    else:
        out = decide(logits, labels)
        m = single_label_metrics(yt.tolist(), out["pred"], len(labels.classnames), out.get("score"))
    keep = ("acc", "macro_f1", "weighted_f1", "micro_f1", "samples_f1", "auroc", "f1_pos")
    figures = {k: round(float(m[k]), 4) for k in keep if m.get(k) is not None}
    return {**figures, "loss": round(loss, 6)}, labels


def _better(a: dict, b: dict | None) -> bool:
    return b is None or (a["macro_f1"], -a["loss"]) > (b["macro_f1"], -b["loss"])


def train_one(cfg: HeadConfig, labels: LabelSpace, feats: ItemFeatures, y, split: D.Holdout, lr: float,
              opts: ClassifierFitOptions, bar, log, init_state: dict | None = None) -> dict:
    """One learning rate: ``epochs`` passes over the fitted part, scored on the held-out part
    after each; the best epoch's state (see the module docstring for the rule)."""
    torch.manual_seed(opts.seed)
    gen = torch.Generator().manual_seed(opts.seed)
    clf = FusionClassifier(cfg, labels)
    if init_state is not None:
        clf.trunk.load_state_dict(init_state)  # keys checked by matching_trunk
    fit_items, held_items = torch.as_tensor(split.fit), torch.as_tensor(split.held)
    steps = math.ceil(len(fit_items) / opts.batch_size)
    opt, sched = optimizer(clf, lr, opts.weight_decay, opts.warmup_steps, steps * opts.epochs)
    history, best, best_state = [], None, None
    for epoch in range(1, opts.epochs + 1):
        clf.train()
        order, total = fit_items[torch.randperm(len(fit_items), generator=gen)], 0.0
        for s in range(steps):
            items = order[s * opts.batch_size:(s + 1) * opts.batch_size]
            loss = _loss(feats.logits(clf, items), y[items], labels.multilabel)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            bar.update(1)
        figures, _ = held_out(clf, feats, held_items, y, labels)
        line = {"lr": lr, "epoch": epoch, "train_loss": round(total / steps, 6), "held_out": figures}
        if _better(figures, best):
            best, best_state, line["best_so_far"] = figures, {k: v.clone() for k, v in clf.state_dict().items()}, True
        history.append(line)
        log(json.dumps(line))
    return {"lr": lr, "history": history, "best": best, "state": best_state,
            "epoch": max(h["epoch"] for h in history if h.get("best_so_far"))}


def load_init(path: str | Path, spec: FU.FusionSpec, towers_spec):
    """The matching head ``--init`` names, checked against this fit before any feature is
    computed: same design, same towers (one clear error otherwise)."""
    head, theirs = FU.load_head(path, f"--init {path}")
    if head.cfg.kind != spec.head:
        raise OptionError(f"--init {path}: a {head.cfg.kind} head; {spec.name} fits a {spec.head} classifier")
    if theirs != towers_spec:
        raise OptionError(f"--init {path}: trained over other tower settings ({theirs.to_dict()}) than this "
                          f"fit's ({towers_spec.to_dict()})")
    return head


def matching_trunk(head, path, cfg: HeadConfig, labels: LabelSpace) -> dict:
    """A matching head's trunk state for a classifier of ``cfg`` (the same sizes, else one clear
    error); its match output (the late temperature, the cross heads' match MLP) is left out."""
    theirs, ours = head.cfg.to_dict(), cfg.to_dict()
    if theirs != ours:
        diff = "; ".join(f"{k}: {v} in the checkpoint, {ours.get(k)} here" for k, v in theirs.items() if ours.get(k) != v)
        raise OptionError(f"--init {path}: its head does not fit this classifier ({diff})")
    trunk = FusionClassifier(cfg, labels).trunk.state_dict()
    state = {k: v for k, v in head.state_dict().items() if k in trunk}
    missing = sorted(set(trunk) - set(state))
    if missing:
        raise OptionError(f"--init {path}: the checkpoint lacks trunk weights {missing[:3]}")
    return state


def slug(text: str) -> str:
    """A file-name part of a dataset name (``jsonl:/a/b`` -> ``jsonl-b``).

    >>> slug("jsonl:/data/my memes"), slug("synthetic-verify")
    ('jsonl-my-memes', 'synthetic-verify')
    """
    if text.startswith("jsonl:"):
        text = "jsonl-" + Path(text[len("jsonl:"):]).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def fit_classifier(spec: FU.FusionSpec, dataset: str, split: str, out: Path, opts: ClassifierFitOptions,
                   name: str | None = None, data_root: str | None = None, towers=None, command: str = "",
                   log=print) -> dict:
    """Train ``spec``'s design as a classifier on ``dataset``/``split``; write
    ``out/<name>.safetensors`` (default name: ``<model>-<dataset>``) and its card; return the card."""
    started = time.perf_counter()
    dataset, data = D.load_train(dataset, split, data_root, opts.limit, opts.seed)
    split_parts = D.holdout(data, opts.holdout, opts.seed)  # checked before any feature is computed
    towers = towers or load_towers(spec.towers)
    init_head = load_init(opts.init, spec, towers.spec) if opts.init else None
    raw = D.item_features(towers, data, opts.extract_batch_size, lambda m: log(f"features: {m}"))
    feats, y = ItemFeatures(raw), D.targets(data)
    feature_s = time.perf_counter() - started
    labels = LabelSpace(tuple(data.classnames), data.kind)
    cfg = HeadConfig(kind=spec.head, image_dim=towers.image_dim, text_dim=towers.text_dim,
                     grid_tokens=raw["image.grid"].shape[1], text_tokens=towers.spec.text_max_tokens,
                     **spec.head_options)
    init_state = matching_trunk(init_head, opts.init, cfg, labels) if init_head is not None else None
    steps = math.ceil(len(split_parts.fit) / opts.batch_size)
    runs, winner = [], None
    with progress.bar(f"fit {spec.name} on {dataset}", steps * opts.epochs * len(opts.lrs), unit="step") as bar:
        for lr in opts.lrs:
            bar.set_description(f"fit {spec.name} lr {lr:g}")
            run = train_one(cfg, labels, feats, y, split_parts, lr, opts, bar, log, init_state)
            runs.append(run)
            if _better(run["best"], winner["best"] if winner else None):
                winner = run
    clf = FusionClassifier(cfg, labels)
    clf.load_state_dict({k: v.half().float() for k, v in winner["state"].items()})  # what ships is fp16
    figures, labels = held_out(clf, feats, torch.as_tensor(split_parts.held), y, labels)
    clf.labels = labels
    train_s = time.perf_counter() - started - feature_s
    name = name or f"{spec.name}-{slug(dataset)}"
    ckpt = Path(out) / f"{name}.safetensors"
    FU.save_checkpoint(ckpt, clf, towers.spec, extra={"classifier": labels.to_dict()})
    card = _card(spec, dataset, data, split_parts, opts, cfg, clf, towers, runs, winner, figures, ckpt)
    card.update(feature_seconds=round(feature_s, 1), train_seconds=round(train_s, 1),
                wall_seconds=round(time.perf_counter() - started, 1), command=command)
    _write_card(ckpt, card)
    return card


def _card(spec, dataset, data, split_parts, opts, cfg, clf, towers, runs, winner, figures, ckpt) -> dict:
    from harness.models.weights import file_digest

    return {
        "model": spec.name, "family": "fusion", "task": D.TASK, "design": spec.head, "head": cfg.to_dict(),
        "head_params": sum(p.numel() for p in clf.parameters()), "towers": towers.spec.to_dict(),
        "tower_checkpoints": towers.checkpoint, "labels": clf.labels.to_dict(),
        "data": {"dataset": dataset, "split": data.split, "items": len(data), "images": len(data.distinct_images()[0]),
                 "fingerprint": data.fingerprint, "subset": data.info.get("subset"),
                 "class_counts": dict(zip(data.classnames, data.class_counts()))},
        "holdout": split_parts.describe(),
        "selection": {"rule": SELECTION, "lr": winner["lr"], "epoch": winner["epoch"], "held_out": figures,
                      "search": [{"lr": r["lr"], "best_epoch": r["epoch"], "best": r["best"], "history": r["history"]}
                                 for r in runs]},
        "saved_weights": "the chosen epoch of the run on the fitted part (no refit on all of train); held_out "
                         "figures re-measured from the saved fp16 weights",
        "recipe": {**asdict(opts), "lrs": list(opts.lrs)},
        "init": None if not opts.init else {"trunk_from": str(opts.init), "sha256": file_digest(opts.init),
                                            "note": "trunk from this matching checkpoint; label layer seeded"},
        "recipe_doc": "harness/training/classifier_fit.py (module docstring)",
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__,
        "checkpoint": ckpt.name, "checkpoint_sha256": file_digest(ckpt),
    }


def _write_card(ckpt: Path, card: dict) -> None:
    tmp = FU.card_path(ckpt).with_name(f".{ckpt.stem}.card.tmp")
    tmp.write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, FU.card_path(ckpt))


# --------------------------------------------------------------------------------- CLI

MATCHING_ONLY = ("select_split", "max_train_images", "prefilter_weights")


def fit_command(spec: FU.FusionSpec, args) -> dict:
    """``vlbench fit MODEL --task image_text_classification --dataset D``: check the options,
    train, print the headline; the card records the command with every recipe value spelled out."""
    from harness.results.store import results_dir

    for opt in MATCHING_ONLY:
        if getattr(args, opt, None) is not None:
            raise OptionError(f"--{opt.replace('_', '-')} applies to the matching fit; a classifier chooses its "
                              "settings on a held-out part of --split")
    if not args.dataset:
        raise OptionError("fit --task image_text_classification needs --dataset D (an image + text -> label "
                          "dataset: vlbench list datasets, or jsonl:DIR)")
    init = args.init
    if init == "matching":  # the model's own shipped matching head
        init = str(FU.checkpoint_path(spec.name))
    opts = replace(ClassifierFitOptions(),
                   **{k: v for k, v in {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                                        "limit": args.limit, "init": init}.items() if v is not None},
                   **({"lrs": (args.lr,)} if args.lr is not None else {}))
    out = Path(args.out) if args.out else results_dir(None) / "fits"
    command = (f"vlbench fit {spec.name} --task {D.TASK} --dataset {args.dataset} --split {args.split} "
               f"--out {out} --epochs {opts.epochs} --batch-size {opts.batch_size} --seed {opts.seed}"
               + (f" --lr {args.lr}" if args.lr is not None else "")
               + (f" --limit {opts.limit}" if opts.limit else "") + (f" --name {args.name}" if args.name else "")
               + (f" --data-root {args.data_root}" if args.data_root else "")
               + (f" --init {opts.init}" if opts.init else ""))
    card = fit_classifier(spec, args.dataset, args.split, out, opts, name=args.name, data_root=args.data_root,
                          command=command, log=progress.echo)
    sel = card["selection"]
    print(f"{spec.name} ({card['design']}) on {card['data']['dataset']}/{card['data']['split']}: lr {sel['lr']:g}, "
          f"epoch {sel['epoch']} chosen on held-out train: {json.dumps(sel['held_out'])} "
          f"({card['wall_seconds']}s) -> {out / card['checkpoint']}", flush=True)
    return card
