"""Zero-shot classification: class embeddings from prompt templates, averaged (CLIP recipe)."""

from __future__ import annotations

from harness.core.measure import Stage
from harness.datasets.base import ClassificationData, TaskKind
from harness.metrics.keys import QueryKey
from harness.tasks.base import Task, TaskResult, register, require_dual
from harness.tasks.encode import EncodeOptions, encode_images, encode_texts


def class_embeddings(model, data: ClassificationData, opts: EncodeOptions, stage: Stage):
    """(C, D): per class, the mean of its unit-norm prompt embeddings, re-normalised."""
    import torch.nn.functional as F

    prompts = [t.format(c) for c in data.classnames for t in data.templates]
    emb = encode_texts(model, prompts, opts, stage)
    emb = emb.view(len(data.classnames), len(data.templates), -1).mean(dim=1)
    return F.normalize(emb, dim=-1)


def evaluate(model, data: ClassificationData, opts: EncodeOptions) -> TaskResult:
    import torch

    from harness.metrics import functional as M

    require_dual(model, "zero-shot classification")
    with Stage("text_encode", opts.device, opts.warmup_batches) as txt_stage:
        classes = class_embeddings(model, data, opts, txt_stage)
    with Stage("image_encode", opts.device, opts.warmup_batches) as img_stage:
        image_emb = encode_images(model, data.images, opts, img_stage)
    labels = torch.as_tensor(data.labels, dtype=torch.long, device=image_emb.device)
    with Stage("scoring", opts.device, warmup=0) as score_stage:
        logits = image_emb @ classes.T
        metrics = M.classification_metrics(logits, labels)
        correct = M.per_sample_correct(logits, labels)
        score_stage.add_items(len(labels))
    return TaskResult(
        metrics={k.value: float(v) for k, v in metrics.items()},
        main_metric=M.MetricKey.ACC1.value,
        timings={s.name: s.timing() for s in (img_stage, txt_stage, score_stage)},
        # true and predicted class per image: macro-F1 / balanced accuracy can be resampled
        per_query={QueryKey.CORRECT.value: correct.tolist(),
                   QueryKey.PRED.value: M.pessimistic_predictions(logits, labels).tolist(),
                   QueryKey.LABEL.value: labels.tolist()},
    )


@register
class ZeroShot(Task):
    name = "zeroshot"
    view = TaskKind.ZEROSHOT
    main_metric = "acc1"
    description = "zero-shot classification from prompt templates; top-1/5 accuracy, macro-F1, balanced accuracy"
    aliases = ("zero-shot", "classification", "zs")

    def evaluate(self, model, data, opts, **kwargs) -> TaskResult:
        return evaluate(model, data, opts)
