"""Caption selection: does the model score an image's true caption above its foils, and does it
match Winoground's 2 images x 2 captions the right way round?

Every model kind runs it on the same (image, caption) pairs, each scored once:

* a dual encoder by cosine of its unit-norm embeddings (every image and distinct caption
  encoded once, through the embedding cache);
* a cross-encoder (ViLT, early / cross-attention fusion, BLIP's ITM head) on every pair
  directly: an item has 2-5 pairs, so no prefilter is needed (``harness.tasks.pairs``: each
  image decoded and through the vision tower once);
* a model that is both (BLIP) by ITM unless ``use_itc`` (the runner's ``--rerank-k 0``: the ITC
  row, as retrieval's "ITC only"), so it reports two rows.

Metrics are :mod:`harness.metrics.selection`; the sidecar keeps each item's outcome, subset and
category, and each group's three outcomes, so the leaderboard bootstraps over items.
"""

from __future__ import annotations

from dataclasses import replace

from harness.core.errors import UserError
from harness.core.interfaces import ModelKind
from harness.core.measure import Stage
from harness.datasets.base import TaskKind
from harness.datasets.selection import CaptionSelectionData
from harness.metrics import selection as CM
from harness.metrics.keys import QueryKey
from harness.tasks.base import Prepared, Task, TaskContext, TaskResult, itc_and_itm_rows, register
from harness.tasks.encode import EncodeOptions, encode_images, encode_texts
from harness.tasks.options import RunOptions


def item_pairs(data: CaptionSelectionData) -> tuple[list[str], list[tuple[int, int]], list[list[int]]]:
    """(distinct captions, distinct (image, caption id) pairs, per item its pairs' indices).
    A selection item's pairs are its captions in order; a group's are ``s[image, caption]``
    row-major: (i0, c0), (i0, c1), (i1, c0), (i1, c1).

    >>> from harness.metrics.selection import SelectionSpec
    >>> from harness.datasets.selection import CaptionItem
    >>> d = CaptionSelectionData("d", "test", [None, None], [CaptionItem((0,), ("a", "b"), "s"),
    ...     CaptionItem((0, 1), ("a", "c"), "s")], SelectionSpec(("s",)), "fp")
    >>> item_pairs(d)
    (['a', 'b', 'c'], [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2)], [[0, 1], [0, 2, 3, 4]])
    """
    text_id: dict[str, int] = {}
    pair_id: dict[tuple[int, int], int] = {}
    layout = []
    for item in data.items:
        caps = [text_id.setdefault(c, len(text_id)) for c in item.captions]
        wanted = [(i, c) for i in item.images for c in caps] if item.is_group else [(item.images[0], c) for c in caps]
        layout.append([pair_id.setdefault(p, len(pair_id)) for p in wanted])
    return list(text_id), list(pair_id), layout


def by_embeddings(model, use_itc: bool) -> bool:
    """Whether the model scores by embedding cosine (a dual encoder, or BLIP's ITC row)."""
    from harness.core.interfaces import CrossEncoder, DualEncoder

    if not isinstance(model, (DualEncoder, CrossEncoder)):
        raise UserError(f"caption_selection needs a dual or cross encoder; {getattr(model, 'name', model)!r} is neither")
    return isinstance(model, DualEncoder) and (use_itc or not isinstance(model, CrossEncoder))


def pair_scores(model, data: CaptionSelectionData, texts, pairs, opts: EncodeOptions, use_itc: bool):
    """(scores (P,) list of floats, the stages run)."""
    import torch

    if by_embeddings(model, use_itc):
        with Stage("image_encode", opts.device, opts.warmup_batches) as img_stage:
            image_emb = encode_images(model, data.images, opts, img_stage)
        with Stage("text_encode", opts.device, opts.warmup_batches) as txt_stage:
            text_emb = encode_texts(model, texts, opts, txt_stage)
        with Stage("scoring", opts.device, warmup=0) as score_stage:
            idx = torch.as_tensor(pairs, dtype=torch.long, device=image_emb.device).reshape(-1, 2)
            scores = (image_emb[idx[:, 0]].float() * text_emb[idx[:, 1]].float()).sum(1).cpu().tolist()
            score_stage.add_items(len(pairs))
        return scores, (img_stage, txt_stage, score_stage)
    from harness.tasks.pairs import score_pair_index

    with Stage("scoring", opts.device, opts.warmup_batches) as score_stage:  # items = pairs
        scores = score_pair_index(model, data.images, texts, pairs, opts, score_stage).tolist()
    return scores, (score_stage,)


def outcomes(data: CaptionSelectionData, scores, layout) -> dict[str, list]:
    """The sidecar's per-item and per-group outcomes from the pairs' scores."""
    subsets = {name: k for k, name in enumerate(data.spec.subsets)}
    categories: dict[str, int] = {}
    sel = {QueryKey.CS_CORRECT.value: [], QueryKey.CS_SUBSET.value: [], QueryKey.CS_CATEGORY.value: []}
    groups = []
    for item, idx in zip(data.items, layout):
        s = [scores[k] for k in idx]
        if item.is_group:
            groups.append([s[0:2], s[2:4]])
            continue
        sel[QueryKey.CS_CORRECT.value].append(int(CM.true_beats_foils(s)))
        sel[QueryKey.CS_SUBSET.value].append(subsets[item.subset])
        cat = -1 if item.category is None else categories.setdefault(item.category, len(categories))
        sel[QueryKey.CS_CATEGORY.value].append(cat)
    out: dict[str, list] = {}
    if sel[QueryKey.CS_CORRECT.value]:
        out.update(sel)
        out.update({QueryKey.CS_SUBSETS.value: list(data.spec.subsets), QueryKey.CS_CATEGORIES.value: list(categories),
                    QueryKey.CS_SPEC.value: [data.spec.to_json()]})
    if groups:
        out.update({k: v.astype(int).tolist() for k, v in CM.winoground_outcomes(groups).items()})
    return out


def metrics_from_outcomes(per_query: dict) -> dict[str, float]:
    """The record's numbers from the sidecar's outcomes (the leaderboard's resamples use this too)."""
    out: dict[str, float] = {}
    if QueryKey.CS_CORRECT.value in per_query:
        spec = CM.SelectionSpec.from_json(per_query[QueryKey.CS_SPEC.value][0])
        out.update(CM.selection_metrics(per_query[QueryKey.CS_CORRECT.value], per_query[QueryKey.CS_SUBSET.value],
                                        per_query[QueryKey.CS_CATEGORY.value], spec,
                                        per_query[QueryKey.CS_CATEGORIES.value]))
    if CM.GROUP_SCORE in per_query:
        out.update(CM.group_metrics(per_query[CM.TEXT_SCORE], per_query[CM.IMAGE_SCORE], per_query[CM.GROUP_SCORE]))
    return out


def evaluate(model, data: CaptionSelectionData, opts: EncodeOptions, use_itc: bool = False) -> TaskResult:
    if not data.items:
        raise ValueError(f"{data.name}/{data.split}: no caption-selection items")
    texts, pairs, layout = item_pairs(data)
    scores, stages = pair_scores(model, data, texts, pairs, opts, use_itc)
    per_query = outcomes(data, scores, layout)
    metrics = metrics_from_outcomes(per_query)
    return TaskResult(metrics=metrics, main_metric=CM.ACC if CM.ACC in metrics else CM.GROUP_SCORE,
                      timings={s.name: s.timing() for s in stages}, per_query=per_query,
                      details=_undefined(metrics, per_query))


def _undefined(metrics: dict[str, float], per_query: dict) -> dict:
    """``{"undefined_metrics": {key: why}}`` for the metrics without a value (else empty)."""
    if QueryKey.CS_CORRECT.value not in per_query:
        return {}
    spec = CM.SelectionSpec.from_json(per_query[QueryKey.CS_SPEC.value][0])
    why = CM.undefined_reasons(metrics, per_query[QueryKey.CS_SUBSET.value], per_query[QueryKey.CS_CATEGORY.value],
                               spec, per_query[QueryKey.CS_CATEGORIES.value])
    return {"undefined_metrics": why} if why else {}



@register
class CaptionSelection(Task):
    """Every model kind runs it; a model that is both (BLIP) gives two rows: ITM on every pair
    (the default) and ITC cosine (``--rerank-k 0``), never a prefilter."""

    name = "caption_selection"
    view = TaskKind.CAPTION_SELECTION
    main_metric = "acc"
    description = ("true caption vs foils (SugarCrepe, ARO, VALSE; ties wrong), Winoground text/image/group "
                   "scores; acc = macro mean of the subsets")
    aliases = ("captions", "compositionality")
    model_kinds = frozenset({ModelKind.DUAL, ModelKind.CROSS, ModelKind.BOTH})
    family_options = ("rerank_k",)

    def settings(self, meta, opts: RunOptions) -> RunOptions:
        opts = super().settings(meta, opts)
        itc_row = meta.kind == ModelKind.BOTH and opts.rerank_k == 0
        return replace(opts, rerank_k=0 if itc_row else None)

    def variants(self, meta, opts: RunOptions) -> list[RunOptions]:
        return itc_and_itm_rows(meta, opts)

    def prepare(self, ctx: TaskContext) -> Prepared:
        use_itc = ctx.meta.kind == ModelKind.BOTH and ctx.options.rerank_k == 0
        by_cosine = ctx.meta.kind == ModelKind.DUAL or use_itc
        return Prepared({"use_itc": use_itc}, {"scorer": "cosine" if by_cosine else "cross-encoder, every pair"})

    def evaluate(self, model, data, opts, **kwargs) -> TaskResult:
        return evaluate(model, data, opts, **kwargs)
