"""Image captioning: a captioner writes one caption per image, scored against the image's
reference captions (the retrieval view's captions) as the COCO caption evaluation does.

* Metrics (x100, :func:`harness.metrics.captioning.evaluate_captions`): ``bleu1``..``bleu4``,
  ``meteor`` (Java), ``rouge_l``, ``cider`` (CIDEr-D, the main metric; document frequencies
  over the evaluated corpus), ``spice`` when its Stanford models are present; corpus-level
  where the metric is defined so, each image's own score in the sidecar.
* ``--task-option judge=MODEL`` (a dual encoder of the registry) adds ``clip_s`` and
  ``refclip_s`` (Hessel et al. 2021: w = 2.5, the "A photo depicts" prefix on candidates and
  references), the mean over images, x100; the judge's weights join the run key and its
  embeddings go through the embedding cache.
* Generation (``max_new_tokens``, ``num_beams``, ``do_sample`` task options and the run's
  batch size) is timed as a ``generate`` stage: per-batch latency p50/p90/p99 after warm-up,
  images/s, generated tokens/s (the record's ``generated_tokens_per_s``).
* ``--model captions:FILE`` scores captions made elsewhere (:mod:`.caption_files`).
* A dataset that declares image groups (``RetrievalData.image_groups``; NoCaps: ``domain``) gets
  every metric again over each group's own images, keyed ``<metric>_<group>`` (``cider_in_domain``,
  ``cider_near_domain``, ``cider_out_domain``, ``spice_out_domain``, ...; :func:`group_scores`),
  beside the overall keys (NoCaps' "entire"); the record's ``image_groups`` detail gives each
  group's image count, and the sidecar each group's per-image scores under the same keys.
* The sidecar keeps each image's caption, its score per metric, and its BLEU statistics
  (``bleu_stats``: a resample of images recomputes corpus BLEU from them).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from harness.core.errors import OptionError, UserError
from harness.core.interfaces import GenerateOptions, ModelKind
from harness.core.measure import Stage
from harness.datasets.base import DatasetError, TaskKind
from harness.metrics.captioning import (
    BLEU_STATS_KEY,
    METRICS,
    TOKENIZERS,
    group_key,
    metric_missing,
    resolve_tokenizer,
)
from harness.tasks import caption_files  # noqa: F401 - registers the captions:FILE scheme
from harness.tasks.base import Prepared, Task, TaskContext, TaskResult, register
from harness.tasks.metric_scorers import PROMPT, clip_s, refclip_s

MAIN = "cider"
JUDGE_KEYS = ("clip_s", "refclip_s")
CAPTION_KEY = "caption"  # sidecar: each image's caption, beside its per-metric scores
UNDEFINED_KEY = "undefined_metrics"  # harness.results.finite.UNDEFINED_KEY (a lower layer's name)


def references_of(data) -> list[list[str]]:
    """Each image's reference captions (a retrieval view's captions of that image); an image
    with none cannot be scored and is named."""
    refs: list[list[str]] = [[] for _ in range(len(data.images))]
    for caption, image in zip(data.captions, data.caption_to_image):
        refs[image].append(caption)
    empty = [i for i, r in enumerate(refs) if not r]
    if empty:
        raise DatasetError(f"{data.name}/{data.split}: image {data.images.key(empty[0])} has no reference caption "
                           f"({len(empty)} images have none), so captioning cannot score it")
    return refs


def generation_options(opts) -> GenerateOptions:
    """The task options as :class:`GenerateOptions` (validated by :meth:`Captioning.settings`)."""
    own = dict(opts.task_options)
    return GenerateOptions(max_new_tokens=int(own["max_new_tokens"]), num_beams=int(own["num_beams"]),
                           do_sample=own["do_sample"] == "true", batch_size=opts.batch_size)


def generate_captions(model, images, gen: GenerateOptions, opts) -> tuple[list[str], Stage, int, float | None]:
    """Captions in dataset order, the timed ``generate`` stage, the tokens generated, and
    tokens/s over the batches after warm-up (the stage's own rule for items/s)."""
    from torch.utils.data import DataLoader

    from harness.tasks.encode import Backoff, _Pixels

    backoff = Backoff(gen.batch_size, opts.device)
    loader = DataLoader(_Pixels(images, model.image_transform()), batch_size=gen.batch_size,
                        num_workers=opts.num_workers, pin_memory=str(opts.device).startswith("cuda"))
    captions: list[str] = []
    done: list[tuple[int, int]] = []  # (images, tokens) per timed batch, in order

    def one(pixels):
        out = model.generate(pixels, gen)
        return out, int(model.last_generated_tokens)

    with Stage("generate", opts.device, opts.warmup_batches) as stage:
        for pixels in loader:
            for out, tokens in backoff.run(one, pixels, len(pixels), stage):
                captions.extend(out)
                done.append((len(out), tokens))
        stage.set_batching(backoff.requested, backoff.size, backoff.events)
    if len(captions) != len(images):
        raise UserError(f"{model.name}: wrote {len(captions)} captions for {len(images)} images")
    return captions, stage, sum(t for _, t in done), _tokens_per_s(stage, done, opts.warmup_batches)


def _tokens_per_s(stage: Stage, done: list[tuple[int, int]], warmup: int) -> float | None:
    """Images/s of the stage times the tokens per image of the same (post-warm-up) batches."""
    timing = stage.timing()
    measured = done[warmup:] if len(done) > warmup else done
    images = sum(n for n, _ in measured)
    if not images or not timing.items_per_s:
        return None
    return timing.items_per_s * sum(t for _, t in measured) / images


def judge_scores(judge, candidates: list[str], references: list[list[str]], images, opts) -> tuple[dict, dict, tuple]:
    """Per-image CLIP-S and RefCLIP-S (x100) with the judge (meta, model, cache), and their stages."""
    import torch

    from harness.tasks.encode import encode_images, encode_texts

    _, model, cache = judge
    jopts = replace(opts, cache=cache)
    with Stage("judge_image_encode", opts.device, opts.warmup_batches) as img_stage:
        image_emb = encode_images(model, images, jopts, img_stage).float()
    owner = [i for i, refs in enumerate(references) for _ in refs]
    texts = [PROMPT + c for c in candidates] + [PROMPT + r for refs in references for r in refs]
    with Stage("judge_text_encode", opts.device, opts.warmup_batches) as txt_stage:
        text_emb = encode_texts(model, texts, jopts, txt_stage).float()
    cand, refs = text_emb[: len(candidates)], text_emb[len(candidates):]
    clip = clip_s(image_emb, cand)
    cos = cand @ refs.T  # (images, all references): bounded by the corpus, as the metric needs
    mine = torch.as_tensor(owner, device=cos.device)[None, :] == torch.arange(len(candidates), device=cos.device)[:, None]
    best = cos.masked_fill(~mine, float("-inf")).max(dim=1).values
    ref = refclip_s(clip, best)
    per = {"clip_s": (100 * clip).double().cpu().tolist(), "refclip_s": (100 * ref).double().cpu().tolist()}
    corpus = {k: sum(v) / len(v) for k, v in per.items()}
    return corpus, per, (img_stage, txt_stage)


def evaluate(model, data, opts, gen: GenerateOptions, tokenizer: str, judge=None,
             metrics: tuple[str, ...] | None = None) -> TaskResult:
    """Caption every image (or read the captions a file gives), then score them."""
    from harness.metrics.captioning import evaluate_captions

    references = references_of(data)
    details: dict[str, Any] = {}
    timings = {}
    if hasattr(model, "captions_for"):  # captions:FILE: nothing is generated, nothing timed
        candidates, read = model.captions_for(data)
        details.update(read)
    else:
        candidates, stage, tokens, tps = generate_captions(model, data.images, gen, opts)
        timings["generate"] = stage.timing()
        details.update(generation={"max_new_tokens": gen.max_new_tokens, "num_beams": gen.num_beams,
                                   "do_sample": gen.do_sample, "batch_size": gen.batch_size},
                       generated_tokens=tokens, generated_tokens_per_s=tps)
    wanted, undefined = _metrics_here(tokenizer, metrics)
    with Stage("scoring", "cpu", warmup=0) as score_stage:
        scores = evaluate_captions(candidates, references, wanted, tokenizer)
        score_stage.add_items(len(candidates))
    timings["scoring"] = score_stage.timing()
    corpus = dict(scores.corpus)
    per_query: dict[str, list] = {k: v for k, v in scores.per_item.items()}
    if scores.bleu_stats:  # what a resample of images needs to recompute corpus BLEU (the page's intervals)
        per_query[BLEU_STATS_KEY] = scores.bleu_stats
    if judge is not None:
        jc, jp, stages = judge_scores(judge, candidates, references, data.images, opts)
        corpus.update(jc)
        per_query.update(jp)
        timings.update({s.name: s.timing() for s in stages})
        details["judge"] = judge[0].name
    groups = getattr(data, "image_groups", None) or {}
    if groups:  # timed as scoring work of its own: every metric runs again per group
        with Stage("group_scoring", "cpu", warmup=0) as group_stage:
            gc, gp, details["image_groups"] = group_scores(groups, candidates, references, per_query, wanted,
                                                           tokenizer)
            group_stage.add_items(len(candidates))
        timings["group_scoring"] = group_stage.timing()
        corpus.update(gc)
        per_query.update(gp)
    undefined = {**undefined, **{group_key(k, g): why for k, why in undefined.items()
                                 for labels in groups.values() for g in sorted(set(labels))}}
    corpus.update({k: float("nan") for k in undefined})
    per_query[CAPTION_KEY] = list(candidates)
    details.update(tokenizer=scores.tokenizer, metric_notes=list(scores.notes), reference_captions=len(data.captions),
                   **({UNDEFINED_KEY: undefined} if undefined else {}))
    return TaskResult(metrics=corpus, main_metric=MAIN, timings=timings, per_query=per_query, details=details)


def group_scores(groups: dict[str, list[str]], candidates: list[str], references: list[list[str]],
                 per_image: dict[str, list], wanted: tuple[str, ...], tokenizer: str) -> tuple[dict, dict, dict]:
    """Every metric over each image group's own corpus, as the NoCaps evaluation server scores
    its domains: BLEU's statistics and CIDEr-D's document frequencies come from the group's
    images alone (so a group's CIDEr-D is not the mean of the overall per-image CIDEr-D). The
    judge's CLIP-S / RefCLIP-S, per-image by definition, are averaged over the group. Returns
    the record keys (:func:`group_key`), each group's per-image scores under the same keys (the
    sidecar: intervals by image per group), and each grouping's image count per label."""
    from harness.metrics.captioning import evaluate_captions

    corpus: dict[str, float] = {}
    per: dict[str, list[float]] = {}
    sizes: dict[str, dict[str, int]] = {}
    owner: dict[str, str] = {}
    for grouping, labels in groups.items():
        sizes[grouping] = {}
        for label in sorted(set(labels)):
            clash = owner.setdefault(group_key("cider", label), f"{grouping}={label}")
            if clash != f"{grouping}={label}":
                raise DatasetError(f"image groups {clash} and {grouping}={label} would share record keys")
            idx = [i for i, g in enumerate(labels) if g == label]
            sizes[grouping][label] = len(idx)
            scores = evaluate_captions([candidates[i] for i in idx], [references[i] for i in idx], wanted, tokenizer)
            for metric, value in scores.corpus.items():
                corpus[group_key(metric, label)] = value
                per[group_key(metric, label)] = scores.per_item[metric]
            if scores.bleu_stats:
                per[group_key(BLEU_STATS_KEY, label)] = scores.bleu_stats
            for metric in JUDGE_KEYS:
                if metric in per_image:
                    values = [per_image[metric][i] for i in idx]
                    corpus[group_key(metric, label)] = sum(values) / len(values)
                    per[group_key(metric, label)] = values
    return corpus, per, sizes


def _metrics_here(tokenizer: str, metrics: tuple[str, ...] | None) -> tuple[tuple[str, ...], dict[str, str]]:
    """The caption metrics to compute and why the others have no value. SPICE is offered only
    when its models are present (left out otherwise, not recorded as a failure); METEOR
    without Java is recorded as undefined with the reason."""
    wanted, undefined = [], {}
    for m in metrics or METRICS:
        why = metric_missing(m, tokenizer)
        if why is None:
            wanted.append(m)
        elif m != "spice":
            undefined[m] = why
    if MAIN not in wanted:
        raise UserError(f"captioning: {MAIN} cannot be computed here: {undefined.get(MAIN)}")
    return tuple(wanted), undefined


def _positive_int(opts, key: str) -> None:
    value = dict(opts.task_options)[key]
    if not value.isdigit() or int(value) < 1:
        raise OptionError(f"--task-option {key}={value}: captioning takes a positive integer")


@register
class Captioning(Task):
    name = "captioning"
    view = TaskKind.CAPTIONING
    main_metric = MAIN
    description = "captions per image against the references: BLEU, METEOR, ROUGE-L, CIDEr-D (main), SPICE, CLIP-S"
    aliases = ("caption", "image_captioning")
    model_kinds = frozenset({ModelKind.CAPTIONER})
    task_options = {"judge": ("",), "max_new_tokens": (str(GenerateOptions.max_new_tokens),),
                    "num_beams": (str(GenerateOptions.num_beams),), "do_sample": ("false", "true"),
                    "tokenizer": TOKENIZERS}

    def settings(self, meta, opts):
        """Generation options checked; the tokenizer resolved (``auto`` -> java or python), so the
        run key names the path that computed the numbers."""
        opts = super().settings(meta, opts)
        for key in ("max_new_tokens", "num_beams"):
            _positive_int(opts, key)
        own = dict(opts.task_options)
        own["tokenizer"] = resolve_tokenizer(own["tokenizer"])
        return replace(opts, task_options=tuple(sorted(own.items())))

    def auxiliary_models(self, opts) -> dict[str, str]:
        judge = dict(opts.task_options).get("judge")
        return {"judge": judge} if judge else {}

    def prepare(self, ctx: TaskContext) -> Prepared:
        own = dict(ctx.options.task_options)
        kwargs: dict[str, Any] = {"gen": generation_options(ctx.options), "tokenizer": own["tokenizer"]}
        record: dict[str, Any] = {}
        if own.get("judge"):
            jmeta, jmodel = ctx.load_model(own["judge"])
            if ModelKind.DUAL not in jmeta.kinds() and ModelKind.BOTH not in jmeta.kinds():
                raise OptionError(f"--task-option judge={own['judge']}: the judge must be a dual encoder; "
                                  f"{jmeta.name} is {jmeta.kind.value}")
            kwargs["judge"] = (jmeta, jmodel, ctx.encode_cache(jmeta, jmodel))
            record["judge_source"] = jmeta.source
        return Prepared(evaluate_kwargs=kwargs, record_options=record)

    def evaluate(self, model, data, opts, **kwargs) -> TaskResult:
        return evaluate(model, data, opts, **kwargs)
