"""Embedded default dataset: deterministic synthetic scenes of coloured shapes with captions.

64x64 scenes of three kinds: one object ("a large red circle in the top left"), 2-3 copies of
a coloured shape ("three green triangles in a row"), two objects in a spatial relation
("a red circle to the left of a blue square"); 5 template paraphrases per image.

Hard negatives: scenes come in *families* sharing all geometry and differing only in content.
Two-object families are drawn from {base, colour swap, shape swap, relation swap}, whose
captions use the same words in another order; count families hold the 2- and 3-copy versions.
``info["hard_negative_pairs"]`` / ``info["hard_negative_of"]`` list them with the swap kind
(colour_swap and shape_swap are binding swaps); ``info["scenes"]`` holds every scene.

Each split has its own seed stream and uses each content once before any repeat, so val/test
hold no duplicate caption (train, bigger than the content space, repeats with new geometry).
Cache: ``<cache>/synthetic/v{GENERATOR_VERSION}-seed{DATASET_SEED}/<split>/`` (PNGs, then
``annotations.json`` last and atomically); the classification view in ``<split>/classification/``.
Anything that changes pixels or captions must bump GENERATOR_VERSION.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from harness.metrics.selection import SelectionSpec

from .base import (
    ClassificationData,
    DatasetError,
    DatasetRequest,
    Format,
    ImageSet,
    RetrievalData,
    TaskKind,
    fingerprint,
    restrict_retrieval,
    subset_indices,
)
from .selection import CaptionItem, CaptionSelectionData, limit_items, swap_groups

NAME = "synthetic"
GENERATOR_VERSION = 1
DATASET_SEED = 0  # fixes the data; DatasetRequest.seed only picks --limit subsets
CANVAS = 64
CAPTIONS_PER_IMAGE = 5
SPLIT_SIZES = {"train": 12000, "val": 1000, "test": 1000}  # retrieval images
CLASS_IMAGES_PER_CLASS = {"train": 100, "val": 20, "test": 20}
_SPLIT_STREAM = {"train": 1, "val": 2, "test": 3}
_CLASSIFICATION_STREAM = 100  # keeps the classification view off the retrieval seed stream

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {  # far apart in RGB and from the light background, so one pixel names the colour
    "red": (220, 40, 40), "green": (40, 160, 60), "blue": (40, 90, 220),
    "yellow": (235, 200, 20), "purple": (150, 60, 190), "orange": (245, 140, 20),
}
CLASSNAMES = [f"{c} {s}" for c in COLOURS for s in SHAPES]
TEMPLATES = ["a {}.", "a picture of a {}.", "a drawing of a {}.", "a small {}.",
             "a {} on a plain background."]

REGIONS = ("top left", "top", "top right", "left", "middle", "right",
           "bottom left", "bottom", "bottom right")
_WHERE = {"top": "at the top", "bottom": "at the bottom", "left": "on the left",
          "right": "on the right", "middle": "in the middle"}
_SIZE_SYNONYM = {"small": "little", "large": "big"}
_NUMBER = {2: "two", 3: "three"}
_SIDE = {"row": "side by side", "column": "one above the other"}
PAIR_VARIANTS = ("base", "colour_swap", "shape_swap", "relation_swap")
BINDING_SWAPS = ("colour_swap", "shape_swap")


@dataclass(frozen=True)
class Layout:
    """Geometry and mix knobs in one place (any change => bump GENERATOR_VERSION)."""

    mix: tuple[tuple[str, float], ...] = (("single", 0.40), ("count", 0.08), ("pair", 0.52))
    # P(family of 1..k members); pairs lean to big families so most have hard negatives,
    # and one pass over the 180 pair orbits still covers the val/test quota without repeats
    family_weights: tuple[tuple[str, tuple[float, ...]], ...] = (
        ("single", (1.0,)), ("count", (0.0, 1.0)), ("pair", (0.05, 0.15, 0.30, 0.50)))
    background: tuple[int, int, int] = (240, 238, 230)
    bg_jitter: int = 8
    speckles: int = 40       # faint background pixels: a little texture, no object pixels
    speckle_depth: int = 14
    cells: tuple[int, int, int] = (16, 32, 48)  # region centres (3x3 grid)
    count_along: tuple[tuple[int, ...], ...] = ((), (), (22, 42), (14, 32, 50))


LAYOUT = Layout()


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    base = cache_dir or os.environ.get("VLBENCH_CACHE") or "~/.cache/vlbench"
    return Path(base).expanduser() / NAME / f"v{GENERATOR_VERSION}-seed{DATASET_SEED}"


# ---------------------------------------------------------------- contents and captions

def _orbits(kind: str) -> list[tuple]:
    if kind == "single":
        return [(c, s, z, r) for c in COLOURS for s in SHAPES for z in ("small", "large") for r in REGIONS]
    if kind == "count":
        return [(c, s, a) for c in COLOURS for s in SHAPES for a in ("row", "column")]
    return [(sp, cp, ax) for sp in itertools.combinations(SHAPES, 2)
            for cp in itertools.combinations(COLOURS, 2) for ax in ("h", "v")]


def _members(kind: str, orbit: tuple) -> list[tuple]:
    """Contents sharing one bag of words; order matches PAIR_VARIANTS for pairs."""
    if kind == "single":
        return [orbit]
    if kind == "count":
        c, s, a = orbit
        return [(c, s, 2, a), (c, s, 3, a)]
    (s1, s2), (c1, c2), ax = orbit
    return [(c1, s1, c2, s2, ax), (c2, s1, c1, s2, ax), (c1, s2, c2, s1, ax), (c2, s2, c1, s1, ax)]


def _scene(kind: str, m: tuple, g: dict | None = None) -> dict[str, Any]:
    """Scene record; with geometry ``g`` the objects get centres and radii (x, y, r)."""
    if kind == "single":
        c, s, size, region = m
        row, col = divmod(REGIONS.index(region), 3)
        spots = [(c, s, LAYOUT.cells[col], LAYOUT.cells[row])]
        extra = {"size": size, "region": region}
    elif kind == "count":
        c, s, n, arr = m
        spots = [(c, s, a, 32) for a in LAYOUT.count_along[n]]
        extra = {"count": n, "arrangement": arr}
    else:
        c0, s0, c1, s1, ax = m
        spots = [(c0, s0, 18, 32), (c1, s1, 46, 32)]
        extra = {"relation": "left of" if ax == "h" else "above"}
    vertical = extra.get("arrangement") == "column" or extra.get("relation") == "above"
    objects = [{"colour": c, "shape": s} for c, s, _, _ in spots]
    for obj, (_, _, x, y), (dx, dy, r) in zip(objects, spots, g["jitter"] if g else ()):
        x, y, r = x + dx, y + dy, g["radius"][extra["size"]] if kind == "single" else r
        obj.update(x=y if vertical else x, y=x if vertical else y, r=r)  # layouts are drawn horizontal
    scene = {"kind": kind, "objects": objects, **extra}
    if g is not None:
        scene.update(bg=g["bg"], noise=g["noise"])
    return scene


def captions(scene: dict) -> list[str]:
    """The 5 paraphrases of a scene (reads only its content, never its geometry)."""
    kind, objs = scene["kind"], scene["objects"]
    if kind == "single":
        cs, size = f'{objs[0]["colour"]} {objs[0]["shape"]}', scene["size"]
        where, alt = _WHERE.get(scene["region"], f'in the {scene["region"]}'), _SIZE_SYNONYM[size]
        return [f"a {size} {cs} {where}", f"{where} there is a {size} {cs}", f"a single {alt} {cs}, {where}",
                f"one {cs} {where}, it is {size}", f"a {alt} {cs} drawn {where}"]
    if kind == "count":
        n, arr = _NUMBER[scene["count"]], scene["arrangement"]
        c, ss = objs[0]["colour"], objs[0]["shape"] + "s"
        return [f"{n} {c} {ss} in a {arr}", f"there are {n} {c} {ss} in a {arr}", f"a {arr} of {n} {c} {ss}",
                f"{n} {ss} in a {arr}, all {c}", f"exactly {n} {c} {ss}, {_SIDE[arr]}"]
    a, b = (f'{o["colour"]} {o["shape"]}' for o in objs)
    first = objs[0]["shape"]
    if scene["relation"] == "left of":
        return [f"a {a} to the left of a {b}", f"a {b} to the right of a {a}",
                f"a {a} and a {b}, the {first} on the left", f"on the left a {a}, on the right a {b}",
                f"a {b} with a {a} on its left"]
    return [f"a {a} above a {b}", f"a {b} below a {a}", f"a {a} and a {b}, the {first} on top",
            f"at the top a {a}, at the bottom a {b}", f"a {b} with a {a} above it"]


def vocabulary() -> list[str]:
    """Every word any caption, class name or template can contain (for word tokenizers)."""
    texts = [cap for kind, _ in LAYOUT.mix for o in _orbits(kind) for m in _members(kind, o)
             for cap in captions(_scene(kind, m))]
    texts += [t.format(c) for t in TEMPLATES for c in CLASSNAMES]
    return sorted({w for t in texts for w in re.findall(r"[a-z]+", t)})


# ---------------------------------------------------------------- sampling

def _backdrop(rng: random.Random) -> dict:
    """Background tint and the seed of its speckles."""
    jit = LAYOUT.bg_jitter
    return {"bg": [v + rng.randint(-jit, jit) for v in LAYOUT.background], "noise": rng.getrandbits(31)}


def _geometry(rng: random.Random, kind: str) -> dict:
    """Shared by every member of a family, so hard negatives differ only in content."""
    j = rng.randint
    g = _backdrop(rng)
    if kind == "single":
        g["jitter"] = [(j(-2, 2), j(-2, 2), 0)]
        g["radius"] = {"small": j(5, 7), "large": j(10, 12)}
    elif kind == "count":
        r, cross = j(5, 7), j(-8, 8)
        g["jitter"] = [(j(-1, 1), cross + j(-1, 1), r) for _ in range(3)]
    else:
        g["jitter"] = [(j(-3, 3), j(-6, 6), j(7, 10)) for _ in range(2)]
    return g


def _families(rng: random.Random, kind: str, n: int) -> list[list[dict]]:
    """Families totalling n scenes; each content is used at most once per pass over the orbits."""
    weights = dict(LAYOUT.family_weights)[kind]
    out, total = [], 0
    while total < n:
        orbits = _orbits(kind)
        rng.shuffle(orbits)
        for orbit in orbits:
            members = _members(kind, orbit)
            k = rng.choices(range(1, len(members) + 1), weights)[0]
            k = min(k, n - total)
            g, family = _geometry(rng, kind), []
            for idx in rng.sample(range(len(members)), k):
                family.append(_scene(kind, members[idx], g))
                if kind == "pair":
                    family[-1]["variant"] = PAIR_VARIANTS[idx]
            out.append(family)
            total += k
            if total == n:
                break
    return out


def _quotas(n: int) -> dict[str, int]:
    q = {kind: round(n * frac) for kind, frac in LAYOUT.mix[:-1]}
    q[LAYOUT.mix[-1][0]] = n - sum(q.values())
    return q


def _split_rng(split: str, stream: int = 0) -> random.Random:
    return random.Random(DATASET_SEED * 1000 + stream + _SPLIT_STREAM[split])


def _header(split: str, view: str, n: int) -> dict[str, Any]:
    return {"dataset": NAME, "generator_version": GENERATOR_VERSION, "dataset_seed": DATASET_SEED,
            "split": split, "view": view, "n_images": n, "canvas": CANVAS}


def retrieval_annotations(split: str) -> dict[str, Any]:
    """The annotation record of a retrieval split (pure: draws nothing on disk)."""
    rng, n = _split_rng(split), SPLIT_SIZES[split]
    scenes, family = [], 0
    for kind, quota in _quotas(n).items():
        for members in _families(rng, kind, quota):
            for scene in members:
                scene["family"] = family
                scenes.append(scene)
            family += 1
    rng.shuffle(scenes)  # interleave kinds; families stay linked by id
    images = [{"file": f"images/{i:05d}.png", "captions": captions(s), "scene": s}
              for i, s in enumerate(scenes)]
    return {**_header(split, "retrieval", n), "images": images}


def classification_annotations(split: str) -> dict[str, Any]:
    """Single objects anywhere on the canvas, one of 24 colour x shape classes, balanced."""
    rng = _split_rng(split, _CLASSIFICATION_STREAM)
    labels = [k for _ in range(CLASS_IMAGES_PER_CLASS[split]) for k in range(len(CLASSNAMES))]
    rng.shuffle(labels)
    images = []
    for i, label in enumerate(labels):
        colour, shape = CLASSNAMES[label].split()
        r = rng.randint(6, 12)
        x, y = rng.randint(r + 2, CANVAS - 3 - r), rng.randint(r + 2, CANVAS - 3 - r)
        scene = {"kind": "single", "objects": [{"colour": colour, "shape": shape, "x": x, "y": y, "r": r}],
                 **_backdrop(rng)}
        images.append({"file": f"images/{i:05d}.png", "label": label, "scene": scene})
    return {**_header(split, "classification", len(labels)), "classnames": CLASSNAMES,
            "templates": TEMPLATES, "images": images}


# ---------------------------------------------------------------- drawing and caching

def render(scene: dict):
    """Pure function of the scene record: same record, same pixels."""
    from PIL import Image, ImageDraw

    bg = tuple(scene["bg"])
    im = Image.new("RGB", (CANVAS, CANVAS), bg)
    rng, px = random.Random(scene["noise"]), im.load()
    for _ in range(LAYOUT.speckles):  # before the shapes: texture never hides an object
        x, y = rng.randrange(CANVAS), rng.randrange(CANVAS)
        d = rng.randint(-LAYOUT.speckle_depth, LAYOUT.speckle_depth)
        px[x, y] = tuple(max(0, min(255, v + d)) for v in bg)
    draw = ImageDraw.Draw(im)
    for o in scene["objects"]:
        x, y, r, fill = o["x"], o["y"], o["r"], COLOURS[o["colour"]]
        if o["shape"] == "circle":
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        elif o["shape"] == "square":
            h = round(r * 0.85)  # a square of side 2r looks much bigger than a circle of radius r
            draw.rectangle([x - h, y - h, x + h, y + h], fill=fill)
        elif o["shape"] == "triangle":
            draw.polygon([(x, y - r), (x + r, y + round(r * 0.8)), (x - r, y + round(r * 0.8))], fill=fill)
        else:
            draw.polygon([(x, y - r), (x + r, y), (x, y + r), (x - r, y)], fill=fill)
    return im


def _read_complete(folder: Path, expected: dict) -> bytes | None:
    """annotations.json bytes when the folder is complete and current, else None."""
    try:
        blob = (folder / "annotations.json").read_bytes()
        ann = json.loads(blob)
    except (OSError, ValueError):
        return None
    current = isinstance(ann, dict) and all(ann.get(k) == v for k, v in expected.items())
    return blob if current and all((folder / e["file"]).is_file() for e in ann["images"]) else None


def _ensure(folder: Path, split: str, view: str, build, n: int) -> tuple[dict, bytes]:
    """Reuse a complete folder or (re)generate it. Concurrent first loads of one split may race."""
    expected = _header(split, view, n)
    blob = _read_complete(folder, expected)
    if blob is not None:
        return json.loads(blob), blob
    ann = build(split)
    blob = json.dumps(ann, sort_keys=True, separators=(",", ":")).encode()
    try:
        (folder / "annotations.json").unlink(missing_ok=True)  # stale => incomplete until the end
        shutil.rmtree(folder / "images", ignore_errors=True)
        (folder / "images").mkdir(parents=True)
        for e in ann["images"]:
            render(e["scene"]).save(folder / e["file"], format="PNG")
        tmp = folder / f"annotations.json.tmp-{os.getpid()}"
        tmp.write_bytes(blob)
        os.replace(tmp, folder / "annotations.json")  # written last: marks the folder complete
    except OSError as e:
        raise DatasetError(f"{NAME}/{split}: cannot write generated {view} data to {folder}: {e}; "
                           "set VLBENCH_CACHE to a writable folder") from e
    return json.loads(blob), blob


def _swap_kind(a: dict, b: dict) -> str:
    if a["kind"] == "count":
        return "count_swap"
    (a0, a1), (b0, b1) = a["objects"], b["objects"]
    if (a0["shape"], a1["shape"]) == (b0["shape"], b1["shape"]):
        return "colour_swap"
    if (a0["colour"], a1["colour"]) == (b0["colour"], b1["colour"]):
        return "shape_swap"
    return "relation_swap"


def hard_negatives(scenes: list[dict]) -> tuple[list[list], list[list]]:
    """(pairs [i, j, kind] with i < j, per image [[j, kind], ...]) within the given images."""
    families: dict[int, list[int]] = {}
    for i, s in enumerate(scenes):
        families.setdefault(s["family"], []).append(i)
    pairs = sorted([i, j, _swap_kind(scenes[i], scenes[j])]
                   for idx in families.values() for i, j in itertools.combinations(idx, 2))
    per_image: list[list] = [[] for _ in scenes]
    for i, j, kind in pairs:
        per_image[i].append([j, kind])
        per_image[j].append([i, kind])
    return pairs, per_image


def _base_info(folder: Path, ann: dict, request: DatasetRequest, keep: list[int]) -> dict[str, Any]:
    info = {"generator_version": GENERATOR_VERSION, "dataset_seed": DATASET_SEED,
            "cache": str(folder), "n_images_full": ann["n_images"]}
    if request.limit is not None:
        info["subset"] = {"limit": request.limit, "seed": request.seed, "indices": keep}
    return info


def _load_retrieval(folder: Path, request: DatasetRequest) -> RetrievalData:
    split = request.split
    ann, blob = _ensure(folder, split, "retrieval", retrieval_annotations, SPLIT_SIZES[split])
    entries = ann["images"]
    keep = subset_indices(len(entries), request.limit, request.seed)
    data = RetrievalData(
        name=NAME, split=split, images=ImageSet([folder / e["file"] for e in entries]),
        captions=[c for e in entries for c in e["captions"]],
        caption_to_image=[i for i, e in enumerate(entries) for _ in e["captions"]],
        fingerprint=fingerprint(GENERATOR_VERSION, DATASET_SEED, split, sha256(blob).hexdigest()),
        info=_base_info(folder, ann, request, keep))
    if len(keep) < len(entries):
        data = restrict_retrieval(data, keep)
    scenes = [entries[i]["scene"] for i in keep]
    pairs, per_image = hard_negatives(scenes)
    data.info.update(scenes=scenes, hard_negative_pairs=pairs, hard_negative_of=per_image)
    return data


def _load_classification(folder: Path, request: DatasetRequest) -> ClassificationData:
    split = request.split
    ann, blob = _ensure(folder, split, "classification", classification_annotations,
                        len(CLASSNAMES) * CLASS_IMAGES_PER_CLASS[split])
    entries = ann["images"]
    keep = subset_indices(len(entries), request.limit, request.seed)
    fp = fingerprint(GENERATOR_VERSION, DATASET_SEED, split, sha256(blob).hexdigest())
    if len(keep) < len(entries):
        fp = fingerprint(fp, keep)  # as restrict_retrieval does
    info = _base_info(folder, ann, request, keep)
    info["scenes"] = [entries[i]["scene"] for i in keep]
    return ClassificationData(
        name=NAME, split=split, images=ImageSet([folder / entries[i]["file"] for i in keep]),
        labels=[entries[i]["label"] for i in keep], classnames=list(ann["classnames"]),
        templates=list(ann["templates"]), fingerprint=fp, info=info)


# caption selection: one subset per swap kind; acc_binding pools the colour and shape swaps (as hn_binding)
SELECTION_SPEC = SelectionSpec(("colour", "shape", "relation", "count"), pooled={"binding": ("colour", "shape")})


def _load_selection(folder: Path, request: DatasetRequest) -> CaptionSelectionData:
    """The caption-selection view of a retrieval split, from its swap pairs: per pair and caption
    position, two SugarCrepe-style items (each image with its caption and the other's as the
    foil) and one Winoground-style 2x2 group; subsets are the swap kinds. These are exactly the
    groups the retrieval view's ``hn_*`` accuracies score (``swap_groups``)."""
    from dataclasses import replace

    ret = _load_retrieval(folder, replace(request, limit=None))
    caps = ret.captions
    items = []
    for kind, i, j, a, b in swap_groups(ret.caption_to_image, len(ret.images), ret.info["hard_negative_pairs"]):
        subset = kind.removesuffix("_swap")
        items += [CaptionItem((i,), (caps[a], caps[b]), subset), CaptionItem((j,), (caps[b], caps[a]), subset),
                  CaptionItem((i, j), (caps[a], caps[b]), subset)]
    info = {k: v for k, v in ret.info.items() if k not in ("scenes", "hard_negative_of", "hard_negative_pairs")}
    data = CaptionSelectionData(NAME, request.split, ret.images, items, SELECTION_SPEC,
                                fingerprint(ret.fingerprint, "caption_selection"), {**info, "items": len(items)})
    data = data.restrict(range(len(items)))  # only the images that are in a swap pair
    data.fingerprint = fingerprint(ret.fingerprint, "caption_selection")
    return limit_items(data, request.limit, request.seed)


def load(request: DatasetRequest) -> RetrievalData | ClassificationData | CaptionSelectionData:
    """Generate (first time) or reuse the cached split and return the asked view."""
    if request.split not in SPLIT_SIZES:
        raise DatasetError(f"{NAME}: no split {request.split!r}; splits: {', '.join(SPLIT_SIZES)}")
    folder = cache_root(request.cache_dir) / request.split
    if TaskKind(request.task) is TaskKind.ZEROSHOT:
        return _load_classification(folder / "classification", request)
    if TaskKind(request.task) is TaskKind.CAPTION_SELECTION:
        return _load_selection(folder, request)
    return _load_retrieval(folder, request)


def iter_training_pairs(split: str = "train", cache_dir: str | None = None) -> Iterator[tuple[Path, str]]:
    """Every (image path, caption) pair of a split, in order (5 per image)."""
    data = load(DatasetRequest(split=split, task=TaskKind.RETRIEVAL, cache_dir=cache_dir))
    for caption, image in zip(data.captions, data.caption_to_image):
        yield data.images.paths[image], caption


FORMAT = Format(name=NAME, tasks=(TaskKind.RETRIEVAL, TaskKind.ZEROSHOT, TaskKind.CAPTION_SELECTION),
                load=lambda spec, request: load(request), probe=lambda spec, data_root: None)
