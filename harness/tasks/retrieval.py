"""Image-text retrieval with a dual encoder: both directions, recall@k as hit rate."""

from __future__ import annotations

from harness.datasets.base import RetrievalData
from harness.measure import Stage
from harness.tasks.base import TaskResult, require_dual
from harness.tasks.hard_negatives import hard_negative_accuracy
from harness.tasks.encode import EncodeOptions, encode_images, encode_texts


def evaluate(model, data: RetrievalData, opts: EncodeOptions) -> TaskResult:
    import torch

    from harness import metrics as M

    require_dual(model, "retrieval")
    with Stage("image_encode", opts.device, opts.warmup_batches) as img_stage:
        image_emb = encode_images(model, data.images, opts, img_stage)
    with Stage("text_encode", opts.device, opts.warmup_batches) as txt_stage:
        text_emb = encode_texts(model, data.captions, opts, txt_stage)
    gt = torch.as_tensor(data.caption_to_image, dtype=torch.long, device=image_emb.device)
    with Stage("scoring", opts.device, warmup=0) as score_stage:
        t2i, i2t = M.retrieval_ranks(image_emb, text_emb, gt)
        score_stage.add_items(len(t2i) + len(i2t))
    metrics = {k.value: float(v) for k, v in M.metrics_from_ranks(t2i, i2t).items()}
    if data.info.get("hard_negative_pairs"):
        metrics.update(hard_negative_accuracy(image_emb, text_emb, data.caption_to_image,
                                              data.info["hard_negative_pairs"]))
    return TaskResult(
        metrics=metrics,
        main_metric=M.MetricKey.RSUM.value,
        timings={s.name: s.timing() for s in (img_stage, txt_stage, score_stage)},
        per_query={"t2i_rank": t2i.tolist(), "i2t_rank": i2t.tolist()},
    )
