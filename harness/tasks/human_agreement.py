"""Agreement of a model's image-text scores with human judgments of captions (Flickr8k-Expert
tau-c, Flickr8k-CF tau-b), as CLIPScore (Hessel et al. 2021) measures it.

A dual encoder scores a pair with CLIP-S = 2.5 * max(cos, 0) (the paper's w = 2.5; the
rescaling is monotone above 0 but ties every negative cosine at 0, which is part of the
metric); a cross-encoder (BLIP ITM, ViLT, early / cross-attention fusion) with its match
score, every judged pair scored directly (a few per image: no prefilter). The metric is
Kendall's tau x 100 over judgment rows (Expert: three rows per pair); the per-row model
score, human score and query image go to the sidecar, from which the leaderboard draws a
bootstrap interval over query images. Published anchor (CLIPScore, Table 1/2): CLIP
ViT-B/32 CLIP-S, Expert tau-c 51.2, CF tau-b 34.4.
"""

from __future__ import annotations

from harness.core.errors import UserError
from harness.core.interfaces import ModelKind
from harness.core.measure import Stage
from harness.datasets.base import TaskKind
from harness.datasets.views import JudgmentData
from harness.metrics.keys import KENDALL_KEYS, QueryKey
from harness.tasks import metric_scorers  # noqa: F401 - registers the metric:NAME scorers
from harness.tasks.base import Task, TaskResult, register
from harness.tasks.encode import EncodeOptions, encode_images, encode_texts

CLIP_S_WEIGHT = 2.5  # Hessel et al. 2021, eq. 1


def clip_s(image_emb, text_emb, pair_image, pair_caption):
    """CLIP-S = 2.5 * max(cos, 0) of each (image, caption) pair of unit-norm embeddings.

    >>> import torch
    >>> img, txt = torch.tensor([[1., 0.], [0., 1.]]), torch.tensor([[.6, .8], [-1., 0.]])
    >>> clip_s(img, txt, torch.tensor([0, 1, 0]), torch.tensor([0, 0, 1])).tolist()
    [1.5, 2.0, 0.0]
    """
    cos = (image_emb[pair_image].float() * text_emb[pair_caption].float()).sum(-1)
    return CLIP_S_WEIGHT * cos.clamp(min=0)


def _dual_scores(model, data: JudgmentData, opts: EncodeOptions, pairs):
    with Stage("image_encode", opts.device, opts.warmup_batches) as img_stage:
        image_emb = encode_images(model, data.images, opts, img_stage)
    with Stage("text_encode", opts.device, opts.warmup_batches) as txt_stage:
        text_emb = encode_texts(model, data.captions, opts, txt_stage)
    with Stage("scoring", opts.device, warmup=0) as score_stage:
        scores = clip_s(image_emb, text_emb, pairs[:, 0].to(image_emb.device), pairs[:, 1].to(image_emb.device))
        score_stage.add_items(len(pairs))
    return scores.cpu(), (img_stage, txt_stage, score_stage)


def _cross_scores(model, data: JudgmentData, opts: EncodeOptions, pairs):
    from harness.tasks.pairs import score_pair_index

    with Stage("scoring", opts.device, opts.warmup_batches) as stage:
        scores = score_pair_index(model, data.images, data.captions, pairs, opts, stage)
    return scores, (stage,)


def evaluate(model, data: JudgmentData, opts: EncodeOptions) -> TaskResult:
    import torch

    from harness.core.interfaces import CrossEncoder, DualEncoder

    pairs = torch.stack([torch.as_tensor(data.pair_image), torch.as_tensor(data.pair_caption)], 1).long()
    extra: dict = {}
    if hasattr(model, "score_judged"):  # a caption metric, metric:NAME (harness.tasks.metric_scorers)
        scores, stages, extra = model.score_judged(data, opts)
        how = extra.pop("pair_score")
    elif isinstance(model, CrossEncoder):  # BLIP too: its ITM head is its match score
        scores, stages = _cross_scores(model, data, opts, pairs)
        how = "match score (cross-encoder)"
    elif isinstance(model, DualEncoder):
        scores, stages = _dual_scores(model, data, opts, pairs)
        how = "CLIP-S = 2.5 * max(cos, 0)"
    else:
        raise UserError(f"{getattr(model, 'name', model)!r} is neither a dual nor a cross-encoder")
    if not torch.isfinite(scores).all():
        raise ValueError(f"{getattr(model, 'name', model)}: non-finite pair scores on {data.name}")
    row_pair = torch.as_tensor(data.row_pair, dtype=torch.long)
    row_scores = scores[row_pair].double().numpy()
    key = KENDALL_KEYS[data.variant]
    from harness.metrics.agreement import kendall_tau, tau_undefined_reason  # numpy: run time only

    why = tau_undefined_reason(row_scores, data.human)  # the run fails on it (harness.results.finite.settle)
    tau = 100.0 * kendall_tau(row_scores, data.human, data.variant)
    groups = torch.as_tensor(data.pair_image)[row_pair]
    return TaskResult(
        metrics={key: tau}, main_metric=key, timings={s.name: s.timing() for s in stages},
        per_query={QueryKey.SCORE.value: row_scores.tolist(), QueryKey.HUMAN.value: list(data.human),
                   QueryKey.GROUP.value: groups.tolist()},
        details={"pair_score": how, "kendall_variant": data.variant, "judged_pairs": len(data.pair_image), **extra,
                 **({"undefined_metrics": {key: f"{key}: {why}"}} if why else {})})


@register
class HumanAgreement(Task):
    name = "human_agreement"
    view = TaskKind.HUMAN_AGREEMENT
    main_metric = "kendall_tau_c/kendall_tau_b"
    description = ("agreement of image-text scores with human caption judgments "
                   "(Flickr8k-Expert tau-c, CF tau-b; CLIPScore)")
    aliases = ("human-agreement", "judgments")
    model_kinds = frozenset({ModelKind.DUAL, ModelKind.CROSS, ModelKind.BOTH, ModelKind.METRIC})

    def evaluate(self, model, data, opts, **kwargs) -> TaskResult:
        return evaluate(model, data, opts)
