"""Image-text retrieval: both directions, recall@k as hit rate.

A dual encoder ranks by embedding dot product. A cross-encoder (or BLIP's ITM head) is
given a :class:`~harness.tasks.rerank.RerankPlan`: it rescores the top-k of a prefilter
dual encoder (or every pair of a small dataset), see :mod:`harness.tasks.rerank`.
"""

from __future__ import annotations

from dataclasses import replace

from harness import shard_plan
from harness.datasets.base import RetrievalData
from harness.keys import QueryKey
from harness.measure import Stage
from harness.tasks.base import TaskResult, require_dual
from harness.tasks.encode import EncodeOptions, encode_images, encode_texts
from harness.tasks.hard_negatives import accuracy_from_groups, comparison_groups, hard_negative_groups, needed_pairs
from harness.tasks.rerank import RerankPlan


def evaluate(model, data: RetrievalData, opts: EncodeOptions, plan: RerankPlan | None = None) -> TaskResult:
    if plan is not None:
        return _evaluate_reranked(model, data, opts, plan)
    import torch

    from harness import metrics as M

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
    from harness import metrics as M
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
    from harness import metrics as M

    return TaskResult(
        metrics={**metrics, **accuracy_from_groups(hn_groups)},
        main_metric=M.MetricKey.RSUM.value,
        timings={s.name: s.timing() for s in stages},
        per_query={QueryKey.T2I_RANK.value: t2i.tolist(), QueryKey.I2T_RANK.value: i2t.tolist(), **hn_groups},
    )
