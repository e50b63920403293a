"""Image-text retrieval: both directions, recall@k as hit rate.

A dual encoder ranks by embedding dot product. A cross-encoder (or BLIP's ITM head) is
given a :class:`~harness.tasks.rerank.RerankPlan`: it rescores the top-k of a prefilter
dual encoder (or every pair of a small dataset), see :mod:`harness.tasks.rerank`.
"""

from __future__ import annotations

from dataclasses import replace

from harness.core.errors import OptionError
from harness.core.interfaces import ModelKind
from harness.core.measure import Stage
from harness.datasets.base import RetrievalData, TaskKind
from harness.metrics.keys import QueryKey
from harness.parallel import shard_plan
from harness.tasks.base import Prepared, Task, TaskContext, TaskResult, itc_and_itm_rows, register, require_dual
from harness.tasks.encode import EncodeOptions, encode_images, encode_texts
from harness.tasks.hard_negatives import accuracy_from_groups, comparison_groups, hard_negative_groups, needed_pairs
from harness.tasks.options import RunOptions
from harness.tasks.rerank import DEFAULT_RERANK_K, RerankPlan, plan_for


def evaluate(model, data: RetrievalData, opts: EncodeOptions, plan: RerankPlan | None = None) -> TaskResult:
    if plan is not None:
        return _evaluate_reranked(model, data, opts, plan)
    import torch

    from harness.metrics import functional as M

    require_dual(model, "retrieval")
    image_emb, text_emb, stages = _embed(model, data, opts)
    gt = torch.as_tensor(data.caption_to_image, dtype=torch.long, device=image_emb.device)
    with Stage("scoring", opts.device, warmup=0) as score_stage:
        t2i, i2t = shard_plan.retrieval_ranks(image_emb, text_emb, gt, opts.shard_gallery)  # M.retrieval_ranks alone
        score_stage.add_items(len(t2i) + len(i2t))
    metrics = {k.value: float(v) for k, v in M.metrics_from_ranks(t2i, i2t).items()}
    groups = {}
    if data.info.get("hard_negative_pairs"):
        groups = hard_negative_groups(image_emb, text_emb, data.caption_to_image, data.info["hard_negative_pairs"])
    return _result(metrics, (*stages, score_stage), t2i, i2t, groups)


def _embed(model, data: RetrievalData, opts: EncodeOptions):
    with Stage("image_encode", opts.device, opts.warmup_batches) as img_stage:
        image_emb = encode_images(model, data.images, opts, img_stage)
    with Stage("text_encode", opts.device, opts.warmup_batches) as txt_stage:
        text_emb = encode_texts(model, data.captions, opts, txt_stage)
    return image_emb, text_emb, (img_stage, txt_stage)


def _evaluate_reranked(cross, data: RetrievalData, opts: EncodeOptions, plan: RerankPlan) -> TaskResult:
    from harness.metrics import functional as M
    from harness.tasks.rerank import rerank_ranks

    stages: tuple = ()
    image_emb = text_emb = None
    if plan.prefilter is not None:
        require_dual(plan.prefilter, f"the prefilter {plan.prefilter_name!r}")
        popts = opts if plan.prefilter_cache is None else replace(opts, cache=plan.prefilter_cache)
        image_emb, text_emb, stages = _embed(plan.prefilter, data, popts)
    score_stage = Stage("scoring", opts.device, warmup=0)
    rerank_stage = Stage("rerank", opts.device, opts.warmup_batches)
    hn_pairs = data.info.get("hard_negative_pairs") or []
    need = needed_pairs(data.caption_to_image, len(data.images), hn_pairs) if hn_pairs else []
    # the hard negatives' pairs ride along in the rerank pass: each image through the towers once
    out = rerank_ranks(cross, data, image_emb, text_emb, plan, opts, score_stage, rerank_stage, need)
    metrics = {k.value: float(v) for k, v in M.metrics_from_ranks(out.t2i, out.i2t).items()}
    groups = {}
    if need:
        groups = comparison_groups(data.caption_to_image, len(data.images), hn_pairs,
                                   dict(zip(need, out.extra_scores.tolist())))
    return _result(metrics, (*stages, score_stage, rerank_stage), out.t2i, out.i2t, groups)


def _result(metrics: dict, stages, t2i, i2t, hn_groups: dict[str, list[list[int]]]) -> TaskResult:
    """The record's numbers and the sidecar's per-query outcomes; the hard negatives' accuracies
    come from the very groups the sidecar keeps (for their bootstrap intervals)."""
    from harness.metrics import functional as M

    return TaskResult(
        metrics={**metrics, **accuracy_from_groups(hn_groups)},
        main_metric=M.MetricKey.RSUM.value,
        timings={s.name: s.timing() for s in stages},
        per_query={QueryKey.T2I_RANK.value: t2i.tolist(), QueryKey.I2T_RANK.value: i2t.tolist(), **hn_groups},
    )


@register
class Retrieval(Task):
    """Dual encoders rank by cosine; cross-encoders rerank the top k of a prefilter dual
    encoder (their registered one, or ``--prefilter``), or score every pair of a small split;
    BLIP-like models (both) rerank their own ITC top k, and ``--rerank-k 0`` is their ITC row."""

    name = "retrieval"
    view = TaskKind.RETRIEVAL
    main_metric = "rsum"
    description = "image<->text retrieval; R@1/5/10 both directions (hit rate), RSUM, median/mean rank"
    aliases = ("ret",)
    model_kinds = frozenset({ModelKind.DUAL, ModelKind.CROSS, ModelKind.BOTH})
    family_options = ("rerank_k", "prefilter")

    def settings(self, meta, opts: RunOptions) -> RunOptions:
        opts = super().settings(meta, opts)
        if meta.kind == ModelKind.DUAL:
            if opts.prefilter:
                raise OptionError(f"--prefilter applies to cross-encoders; {meta.name} is a dual encoder")
            return replace(opts, rerank_k=None, prefilter=None)
        k = DEFAULT_RERANK_K if opts.rerank_k is None else opts.rerank_k
        if k < 0 or (k == 0 and meta.kind == ModelKind.CROSS):
            raise OptionError(f"--rerank-k {k}: {meta.name} is a cross-encoder and needs k >= 1")
        if meta.kind == ModelKind.BOTH:
            return replace(opts, rerank_k=k, prefilter=opts.prefilter if k else None)
        return replace(opts, rerank_k=k, prefilter=opts.prefilter or meta.prefilter)

    def variants(self, meta, opts: RunOptions) -> list[RunOptions]:
        return itc_and_itm_rows(meta, opts)

    def auxiliary_models(self, opts: RunOptions) -> dict[str, str]:
        return {"prefilter": opts.prefilter} if opts.prefilter else {}

    def prepare(self, ctx: TaskContext) -> Prepared:
        opts, data = ctx.options, ctx.data
        if not opts.rerank_k:
            return Prepared()
        cache = None
        if opts.prefilter:
            pmeta, prefilter = ctx.load_model(opts.prefilter)
            cache = ctx.encode_cache(pmeta, prefilter)  # its own weights key its embeddings
        else:
            prefilter = ctx.model if ctx.meta.kind == ModelKind.BOTH else None
        plan = plan_for(len(data.images), len(data.captions), opts.rerank_k, prefilter,
                        opts.prefilter or (ctx.meta.name if prefilter is not None else None), opts.pair_budget, cache)
        return Prepared({"plan": plan}, plan.describe())

    def evaluate(self, model, data, opts, **kwargs) -> TaskResult:
        return evaluate(model, data, opts, **kwargs)
