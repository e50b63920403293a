"""The ``wds`` format: CLIP_benchmark's webdataset layout (see :mod:`harness.datasets.wds_read`).

Where the folder is, first match wins: a local copy under ``--data-root`` / ``VLBENCH_DATA``
(``<root>/<source.folder>/``, holding ``<split>/nshards.txt``); else the manifest's hub
repository (``source: {kind: hf, id: clip-benchmark/wds_...}``), fetched into the cache folder
(:mod:`harness.datasets.wds_source`; offline and not cached: one line). ``--dataset wds:DIR``
reads a user's own folder, URL or ``hf://OWNER/REPO`` with no manifest entry
(:func:`adhoc_spec`).

Class names come from the manifest's ``classes`` when it gives them, else the folder's
``classnames.txt``; templates likewise, else ``zeroshot_classification_templates.txt``
(CLIP_benchmark writes the class name as ``{c}``; read as ``{}``), else CLIP's
``a photo of a {}.``. A sample is identified by its shard and key (``test/3.tar:s0000042``),
an image by the sha256 of its bytes; the fingerprint hashes ids, targets, class names and
templates, so unchanged shards give the same run key and changed ones do not.
"""

from __future__ import annotations

from pathlib import Path

from .assemble import content_hash, skip
from .base import (
    ClassificationData,
    DatasetError,
    DatasetRequest,
    Format,
    RetrievalData,
    TaskKind,
    apply_limit,
    data_roots,
    fingerprint,
)
from .resources import classnames as curated_names
from .resources import templates as template_set
from .wds_read import CLASSIFICATION, MULTILABEL, RETRIEVAL, Split, dataset_type, lines, read_split
from .wds_source import Location, is_remote

DEFAULT_TEMPLATES = ["a photo of a {}."]
ADHOC_PREFIX = "wds:"


def _local_copy(spec, data_root: str | None) -> Path | None:
    for root in data_roots(spec.folder, data_root):
        if (root / spec.default_split / "nshards.txt").is_file():
            return root
    return None


def location(spec, request_root: str | None, cache_dir: str | None = None) -> Location:
    """The dataset's root: the ad-hoc location, a local copy, or its hub repository."""
    src = spec.source
    if src.get("location"):
        return Location.of(src["location"], cache_dir)
    local = _local_copy(spec, request_root)
    if local is not None:
        return Location.of(str(local))
    if src["kind"] == "hf":
        return Location.of(f"hf://{src['id']}@{src['revision']}", cache_dir)
    roots = data_roots(spec.folder, request_root)
    raise DatasetError(f"{spec.name}: no {spec.default_split}/nshards.txt under "
                       f"{' or '.join(map(str, roots)) or 'any data root (no --data-root, VLBENCH_DATA unset)'}")


def _classes(spec, loc: Location) -> tuple[list[str], list[str]]:
    cfg = spec.classes or {}
    names = None
    if cfg.get("names") not in (None, "folders", "meta"):
        names = curated_names(cfg["names"])
    names = names or lines(loc, "classnames.txt")
    if not names:
        raise DatasetError(f"{loc.where('classnames.txt')}: needed for a classification dataset (one class a line)")
    if "templates" in cfg:
        templates = template_set(cfg["templates"])
    else:
        found = lines(loc, "zeroshot_classification_templates.txt")
        templates = [t.replace("{c}", "{}") for t in found] if found else list(DEFAULT_TEMPLATES)
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise DatasetError(f"{loc.where('zeroshot_classification_templates.txt')}: template {bad[0]!r} has no "
                           "{c} for the class name")
    return names, templates


def _want_kind(spec, loc: Location, task: TaskKind) -> str:
    kind = spec.options.get("dataset_type") or dataset_type(loc)
    if task is TaskKind.RETRIEVAL and kind != RETRIEVAL:
        raise DatasetError(f"{spec.name}: a {kind} dataset (dataset_type.txt) has no retrieval view")
    if task is not TaskKind.RETRIEVAL and kind == RETRIEVAL:
        raise DatasetError(f"{spec.name}: a retrieval dataset (dataset_type.txt) has no {task.value} view")
    if kind == MULTILABEL:
        raise DatasetError(f"{spec.name}: a multi-label dataset (.npy labels); vlbench's zeroshot task scores "
                           "single-label classification only (multi-label mAP is not implemented)")
    return kind


def read(spec, request: DatasetRequest) -> tuple[Location, Split, str, list[str], list[str]]:
    """(location, the split's samples, dataset type, class names, templates) -- no decoding."""
    loc = location(spec, request.data_root, request.cache_dir)
    kind = _want_kind(spec, loc, request.task)
    names, templates = _classes(spec, loc) if kind != RETRIEVAL else ([], [])
    source_split = spec.splits[request.split].source_split if request.split in spec.splits else None
    split = read_split(loc, source_split or request.split, kind, len(names) if names else None, request.cache_dir)
    return loc, split, kind, names, templates


def load(spec, request: DatasetRequest) -> RetrievalData | ClassificationData:
    loc, split, kind, names, templates = read(spec, request)
    info = {"location": loc.name, **({"cache": str(loc.cache)} if loc.cache else {}), **split.counts}
    if kind == RETRIEVAL:
        data = _retrieval(spec, request, split, info)
    else:
        digest = content_hash(split.sample_ids, ((y, names[y]) for y in split.labels))
        data = ClassificationData(
            name=spec.name, split=request.split, images=split.images, labels=list(split.labels),
            classnames=names, templates=templates, info=info,
            fingerprint=fingerprint("wds", request.split, digest, names, templates))
    return apply_limit(data, request.limit, request.seed)


def _retrieval(spec, request: DatasetRequest, split: Split, info: dict) -> RetrievalData:
    keep = [i for i, caps in enumerate(split.captions) if caps]
    if len(keep) < len(split.captions):
        dropped = [split.sample_ids[i] for i, caps in enumerate(split.captions) if not caps]
        skip(f"{spec.name}/{request.split}: {len(dropped)} sample(s) have no caption and are dropped "
             f"(e.g. {', '.join(dropped[:3])})", request.strict)
    pairs = [(c, k) for k, i in enumerate(keep) for c in split.captions[i]]
    ids = [split.sample_ids[i] for i in keep]
    images = split.images.subset(keep) if len(keep) < len(split.captions) else split.images
    return RetrievalData(
        name=spec.name, split=request.split, images=images, captions=[c for c, _ in pairs],
        caption_to_image=[k for _, k in pairs],
        fingerprint=fingerprint("wds", request.split, content_hash(ids, ((k, c) for c, k in pairs))),
        info={**info, "dropped_images_without_captions": len(split.captions) - len(keep)})


def probe(spec, data_root: str | None) -> str | None:
    """Cheap: a local copy, or the download cache holds the default split's shard count."""
    if spec.source.get("location"):
        loc = Location.of(spec.source["location"])
    elif _local_copy(spec, data_root) is not None:
        return None
    elif spec.source["kind"] == "hf":
        loc = Location.of(f"hf://{spec.source['id']}@{spec.source['revision']}")
    else:
        return f"no {spec.default_split}/nshards.txt under {', '.join(map(str, data_roots(spec.folder, data_root)))}"
    if loc.has(f"{spec.default_split}/nshards.txt"):
        return None
    return f"not downloaded: {loc.name} (needs network once)" if is_remote(loc.name) else f"no {loc.where('')}"


FORMAT = Format(name="wds", tasks=(TaskKind.RETRIEVAL, TaskKind.ZEROSHOT), load=load, probe=probe,
                options={"dataset_type": str})


def adhoc_spec(name: str, cache_dir: str | None = None):
    """The manifest entry ``--dataset wds:DIR`` stands for: its splits are the folder's (a remote
    location: test and train), its view from ``dataset_type.txt``."""
    from .manifest import DatasetSpec, SplitSpec

    where = name[len(ADHOC_PREFIX):]
    if not where:
        raise DatasetError("--dataset wds:DIR needs a folder, an http(s):// URL or hf://OWNER/REPO after 'wds:'")
    loc = Location.of(where, cache_dir)
    if loc.local is not None:
        if not loc.local.is_dir():
            raise DatasetError(f"--dataset {name}: {loc.local} is not a folder")
        splits = sorted(p.parent.name for p in loc.local.glob("*/nshards.txt"))
        if not splits:
            raise DatasetError(f"--dataset {name}: no <split>/nshards.txt in {loc.local} (CLIP_benchmark's "
                               "webdataset layout)")
        where = str(loc.local)
    else:
        splits = ["test", "train"]
    kind = dataset_type(loc)
    default = "test" if "test" in splits else splits[0]
    return DatasetSpec(
        name=f"{ADHOC_PREFIX}{where}", tasks=(TaskKind.RETRIEVAL,) if kind == RETRIEVAL else
        (TaskKind.ZEROSHOT, TaskKind.LINEAR_PROBE) if "train" in splits else (TaskKind.ZEROSHOT,),
        format="wds", source={"kind": "local", "location": where}, default_split=default,
        splits={s: SplitSpec(s, partial_ok=False) for s in splits}, license="unknown (a user's folder)",
        citation="", description=f"webdataset folder {where}", origin=f"--dataset {name}",
        languages=())  # a user's folder does not say its language: records carry none


__all__ = ["ADHOC_PREFIX", "CLASSIFICATION", "FORMAT", "adhoc_spec", "load", "probe", "read"]
