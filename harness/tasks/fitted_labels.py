"""Per-item outputs of a fitted classifier (:class:`harness.core.interfaces.LabelPredictor`,
made by ``vlbench fit MODEL --task image_text_classification``) for
``image_text_classification``: its own label logits and the unimodal features its modality
ablation probes read.

Items share images and texts (the synthetic views: each image in two to four items), so each
distinct image and each distinct text goes through its tower once (stages ``image_encode``
and ``text_encode``, timed per batch); the head's per-pair part then runs per item
(``pair_scoring``). These outputs are not stored in the embedding cache: a fitted head's
per-image state (an xattn head keeps keys and values of every grid token) is many times the
size of an embedding, so each run recomputes them. The ablation features are the towers'
pooled features, L2-normalised as the dual encoders' embeddings are, so the probes' C grid
means the same thing for every model.
"""

from __future__ import annotations

from harness.core import progress
from harness.core.errors import UserError
from harness.core.measure import Stage
from harness.tasks.encode import EncodeOptions, _Pixels
from harness.tasks.pair_features import SplitFeatures

ABLATION_NOTE = ("fused: the fitted head's own predictions; image-only / text-only: linear probes (L-BFGS, C on "
                 "held-out train) on the frozen towers' L2-normalised pooled image / text features")


def _cat(parts: list[dict]) -> dict:
    import torch

    return {k: _cat([p[k] for p in parts]) if isinstance(parts[0][k], dict) else torch.cat([p[k] for p in parts])
            for k in parts[0]}


def _index(feats: dict, idx) -> dict:
    return {k: _index(v, idx) if isinstance(v, dict) else v[idx] for k, v in feats.items()}


def _images(model, images, opts: EncodeOptions, stage: Stage) -> dict:
    from torch.utils.data import DataLoader

    loader = DataLoader(_Pixels(images, model.image_transform()), batch_size=opts.batch_size,
                        num_workers=opts.num_workers, pin_memory=str(opts.device).startswith("cuda"),
                        prefetch_factor=2 if opts.num_workers else None)
    parts = []
    with progress.bar(stage.name.replace("_", " "), len(images), unit="img") as bar:
        for px in loader:
            with stage.batch(len(px)):
                parts.append(model.image_features(px.to(opts.device)))
            bar.update(len(px))
    return _cat(parts)


def _texts(model, texts: list[str], opts: EncodeOptions, stage: Stage) -> dict:
    parts = []
    with progress.bar(stage.name.replace("_", " "), len(texts), unit="text") as bar:
        for start in range(0, len(texts), opts.batch_size):
            batch = texts[start:start + opts.batch_size]
            with stage.batch(len(batch)):
                parts.append(model.text_features(batch))
            bar.update(len(batch))
    return _cat(parts)


def fitted_outputs(model, data, opts: EncodeOptions, prefix: str = ""):
    """(logits (N, K), SplitFeatures with ``fused`` = logits and the two unit-norm ablation
    features, timings by stage) of one split (ImageTextLabelData)."""
    import torch
    import torch.nn.functional as F

    if data.is_pair:
        raise UserError(f"{data.name}/{data.split}: a fitted fusion classifier reads one image per item; this "
                        "dataset has two (NLVR2)")
    images, of_image = data.distinct_images()
    texts, of_text = data.distinct_texts()
    with Stage(f"{prefix}image_encode", opts.device, opts.warmup_batches) as img_stage:
        img = _images(model, images, opts, img_stage)
    with Stage(f"{prefix}text_encode", opts.device, opts.warmup_batches) as txt_stage:
        txt = _texts(model, texts, opts, txt_stage)
    of_image, of_text = torch.as_tensor(of_image), torch.as_tensor(of_text)
    with Stage(f"{prefix}pair_scoring", opts.device, warmup=0) as pair_stage:
        logits = []
        for start in range(0, len(data), 1024):
            rows = slice(start, min(start + 1024, len(data)))
            with pair_stage.batch(rows.stop - rows.start):
                logits.append(model.classify_features(_index(img["prep"], of_image[rows]),
                                                      _index(txt["prep"], of_text[rows])))
        logits = torch.cat(logits)
    feats = SplitFeatures(logits, F.normalize(img["pooled"][of_image], dim=-1),
                          F.normalize(txt["pooled"][of_text], dim=-1))
    return logits, feats, {s.name: s.timing() for s in (img_stage, txt_stage, pair_stage)}
