"""Image + text -> label views of the synthetic scenes (the embedded default), built from the
retrieval split's own images so the embedding cache is shared with retrieval. Two views:

* ``verify`` (NLVR-style statement verification): a statement about the scene -> true/false.
  Images come in pairs A, B of the same scene kind with different contents (hard-negative
  families first: colour, shape, relation and count swaps; then other scenes of the kind),
  and one paraphrase slot p per pair gives four items: (A, caption_p(A), true),
  (A, caption_p(B), false), (B, caption_p(B), true), (B, caption_p(A), false). Every statement
  occurrence and every image is once true and once false, so text alone and image alone are
  exactly at chance; only the binding of the two tells the label.
* ``qa``: "what colour is the triangle?" -> the colour, on two-object scenes (two different
  shapes, two different colours): one question per object. The question alone names a
  shape, not its colour; the image alone has two colours and does not say which is asked.

``holdout_groups``: the four items of an image pair (verify) or the two questions of a scene
(qa) stay on one side of a fit / held-out cut. Deterministic: the retrieval split's scenes
plus a fixed seed per split and view. Sizes are
items (2,000 for train, 1,000 for val and test) so the tiny models encode them fast.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

from . import synthetic
from .base import DatasetError, DatasetRequest, Format, ImageSet, TaskKind, fingerprint
from .pair_labels import ImageTextLabelData, limit_pairs

VIEW_VERSION = 2  # anything that changes the items bumps this (2: train 4,000 -> 2,000 items)
VIEWS = ("verify", "qa")
# train: 2,000 items, not 4,000: the three linear probes per run (1,024-d, float64, L-BFGS) are
# memory-bound and took most of `make bench` at 4,000 (benchmarks/RESULTS.md, issue 20)
SIZES = {"train": 2000, "val": 1000, "test": 1000}
VERIFY_CLASSES = ["false", "true"]
QA_CLASSES = list(synthetic.COLOURS)
_VIEW_STREAM = {"verify": 200, "qa": 300}


def _rng(view: str, split: str) -> random.Random:
    return random.Random(synthetic.DATASET_SEED * 1000 + _VIEW_STREAM[view] + synthetic._SPLIT_STREAM[split])


def scene_pairs(scenes: list[dict], hard: list[list], rng: random.Random) -> list[tuple[int, int, str]]:
    """Disjoint image pairs (i, j, kind): hard-negative family pairs first (each image used
    once), then the rest paired within their scene kind when their contents differ."""
    used, out = set(), []
    hard = list(hard)
    rng.shuffle(hard)
    for i, j, kind in hard:
        if i not in used and j not in used:
            used.update((i, j))
            out.append((i, j, kind))
    by_kind: dict[str, list[int]] = {}
    for i, s in enumerate(scenes):
        if i not in used:
            by_kind.setdefault(s["kind"], []).append(i)
    for kind in sorted(by_kind):
        rest = by_kind[kind]
        rng.shuffle(rest)
        waiting: list[int] = []
        for i in rest:
            mate = next((w for w in waiting if synthetic.captions(scenes[w]) != synthetic.captions(scenes[i])), None)
            if mate is None:
                waiting.append(i)
                continue
            waiting.remove(mate)
            out.append((mate, i, f"other_{kind}"))
    rng.shuffle(out)
    return out


def verify_items(scenes: list[dict], hard: list[list], n: int,
                 rng: random.Random) -> list[tuple[int, str, int, str, str]]:
    """(image, statement, label, pair kind, pair id) items, four per image pair."""
    pairs = scene_pairs(scenes, hard, rng)[: n // 4]
    items = []
    for i, j, kind in pairs:
        p = rng.randrange(synthetic.CAPTIONS_PER_IMAGE)
        a, b = synthetic.captions(scenes[i])[p], synthetic.captions(scenes[j])[p]
        unit = f"{i}-{j}"
        items += [(i, a, 1, kind, unit), (i, b, 0, kind, unit), (j, b, 1, kind, unit), (j, a, 0, kind, unit)]
    return items


def qa_items(scenes: list[dict], n: int, rng: random.Random) -> list[tuple[int, str, int, str, str]]:
    """(image, question, colour index, shape asked, scene) items, two per two-object scene."""
    two = [i for i, s in enumerate(scenes) if s["kind"] == "pair"]
    rng.shuffle(two)
    items = []
    for i in sorted(two[: n // 2]):
        for obj in scenes[i]["objects"]:
            items.append((i, f"what colour is the {obj['shape']}?", QA_CLASSES.index(obj["colour"]), obj["shape"],
                          str(i)))
    return items


def load_view(view: str, request: DatasetRequest) -> ImageTextLabelData:
    if view not in VIEWS:
        raise DatasetError(f"synthetic pairs: unknown view {view!r}; views: {', '.join(VIEWS)}")
    if request.split not in SIZES:
        raise DatasetError(f"synthetic-{view}: no split {request.split!r}; splits: {', '.join(SIZES)}")
    ret = synthetic.load(replace(request, task=TaskKind.RETRIEVAL, limit=None))
    scenes, rng, n = ret.info["scenes"], _rng(view, request.split), SIZES[request.split]
    if view == "verify":
        items, classes = verify_items(scenes, ret.info["hard_negative_pairs"], n, rng), VERIFY_CLASSES
    else:
        items, classes = qa_items(scenes, n, rng), QA_CLASSES
    if len(items) != n:  # the retrieval split is too small for the view: a generator change broke it
        raise DatasetError(f"synthetic-{view}/{request.split}: built {len(items)} items, expected {n}")
    paths = ret.images.paths
    data = ImageTextLabelData(
        name=f"synthetic-{view}", split=request.split, images=ImageSet([paths[i] for i, *_ in items]),
        texts=[t for _, t, *_ in items], labels=[y for _, _, y, *_ in items], classnames=list(classes),
        multilabel=False, fingerprint=fingerprint(ret.fingerprint, view, VIEW_VERSION, n),
        holdout_groups=[unit for *_, unit in items],
        info={"generator_version": synthetic.GENERATOR_VERSION, "view_version": VIEW_VERSION, "view": view,
              "retrieval_fingerprint": ret.fingerprint, "images_used": len({i for i, *_ in items}),
              "item_kinds": dict(sorted(Counter(k for *_, k, _ in items).items()))})
    return limit_pairs(data, request.limit, request.seed)


def load(spec, request: DatasetRequest) -> ImageTextLabelData:
    if request.task is not TaskKind.IMAGE_TEXT_CLASSIFICATION:
        raise DatasetError(f"{spec.name} has only an image_text_classification view")
    data = load_view(spec.options.get("view", ""), request)
    data.name = spec.name
    return data


FORMAT = Format(name="synthetic_pairs", tasks=(TaskKind.IMAGE_TEXT_CLASSIFICATION,), load=load,
                probe=lambda spec, data_root: None, options={"view": str})
