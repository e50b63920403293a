"""Dataset registry, built from ``datasets_manifest.yaml``: each manifest entry (and each of
its subsets) becomes one registered dataset, read by the loader module its ``format`` names.
Adding a dataset is one manifest entry; a new on-disk format is one module listed in FORMATS.
Loader modules are light (PIL/json/datasets imported inside functions)."""

from __future__ import annotations

from functools import partial

from harness.core.registry import Registry
from harness.datasets import (
    aro,
    cifar,
    coco_captions,
    csvlabels,
    flickr8k,
    flickr8k_judgments,
    folder,
    hateful_memes,
    hf,
    jsonl_pairs,
    karpathy,
    mmimdb,
    multilingual,
    mvsa,
    nlvr,
    nlvr2,
    nocaps,
    sugarcrepe,
    synthetic,
    synthetic_pairs,
    valse,
    wds,
    winoground,
)
from harness.datasets.base import (
    ClassificationData,
    DatasetError,
    DatasetNotFound,
    DatasetRequest,
    Format,
    RetrievalData,
    TaskKind,
    apply_limit,
)
from harness.datasets.manifest import (
    DatasetSpec,
    SubsetSpec,
    load_manifest,
    manifest_paths,
)
from harness.datasets.meta import DatasetMeta
from harness.datasets.pair_labels import ImageTextLabelData, limit_pairs
from harness.datasets.resources import resource

FORMATS: dict[str, Format] = {m.FORMAT.name: m.FORMAT for m in (
    synthetic, flickr8k, karpathy, coco_captions, folder, csvlabels, cifar, hf,
    sugarcrepe, aro, winoground, valse, flickr8k_judgments, nocaps,
    hateful_memes, mvsa, mmimdb, nlvr, nlvr2, jsonl_pairs, synthetic_pairs, wds)} | {
    f.name: f for f in multilingual.FORMATS}


def _source_text(spec: DatasetSpec) -> str:
    src = spec.source
    if src["kind"] == "hf":
        return f"hf: {src['id']}@{src['revision']}"
    if src["kind"] == "generated":
        return "generated"
    if src.get("location"):
        return f"wds: {src['location']}"
    return f"local: {spec.folder}/ ({spec.format})"


def _load_subset(spec: DatasetSpec, subset: SubsetSpec, request: DatasetRequest):
    """A manifest subset: the seeded selection of its split, then any --limit within it."""
    from dataclasses import replace

    data = FORMATS[spec.format].load(spec, replace(request, split=subset.split, limit=None))
    limit = limit_pairs if isinstance(data, ImageTextLabelData) else apply_limit
    data = limit(data, subset.limit, subset.seed, name=subset.name)
    return limit(data, request.limit, request.seed)


def metas(spec: DatasetSpec) -> list[tuple[DatasetMeta, tuple[str, ...]]]:
    """The registered entries of one manifest entry: itself, then one per subset."""
    fmt = FORMATS[spec.format]
    common = {"tasks": spec.tasks, "license": spec.license, "citation": spec.citation,
              "source": _source_text(spec), "offline": spec.source["kind"] == "generated", "spec": spec,
              "probe": partial(fmt.probe, spec)}
    out = [(DatasetMeta(name=spec.name, splits=tuple(spec.splits), default_split=spec.default_split,
                        loader=partial(fmt.load, spec), description=spec.description, aliases=spec.aliases,
                        **common), spec.aliases)]
    for sub in spec.subsets:
        out.append((DatasetMeta(name=sub.name, splits=(sub.split,), default_split=sub.split,
                                loader=partial(_load_subset, spec, sub),
                                description=f"{sub.limit} images of {spec.name}/{sub.split}, seed {sub.seed}",
                                **common), ()))
    return out


class DatasetRegistry(Registry[DatasetMeta]):
    """The manifest's datasets, plus a user's folder named on the command line with a format
    prefix (``wds:DIR``), registered on first use with no manifest entry."""

    def resolve(self, name: str) -> str:
        if isinstance(name, str) and name.startswith(wds.ADHOC_PREFIX) and not super().__contains__(name):
            spec = wds.adhoc_spec(name)
            if not super().__contains__(spec.name):
                _register(self, spec)
            return spec.name
        return super().resolve(name)


def _register(reg: Registry[DatasetMeta], spec: DatasetSpec) -> None:
    for meta, aliases in metas(spec):
        try:
            reg.register(meta.name, meta, aliases=aliases)
        except ValueError as exc:
            raise DatasetError(f"{spec.origin}: {exc}") from None


def build_registry(specs: list[DatasetSpec]) -> Registry[DatasetMeta]:
    reg = DatasetRegistry("dataset")
    for spec in specs:
        _register(reg, spec)
    return reg


def load_registry() -> Registry[DatasetMeta]:
    specs = [s for path in manifest_paths() for s in load_manifest(path, FORMATS, resource)]
    return build_registry(specs)


DATASETS: Registry[DatasetMeta] = load_registry()


def resolve_dataset(name: str) -> DatasetMeta:
    """The registered dataset ``name`` (or alias), or for ``jsonl:DIR`` the user's own folder of
    image + text -> label items (:mod:`harness.datasets.jsonl_pairs`), read with no manifest entry."""
    if name.startswith(jsonl_pairs.PREFIX):
        return metas(jsonl_pairs.folder_spec(name[len(jsonl_pairs.PREFIX):]))[0][0]
    return DATASETS.get(name)


__all__ = ["DATASETS", "FORMATS", "ClassificationData", "DatasetError", "DatasetMeta", "DatasetNotFound",
           "DatasetRequest",
           "ImageTextLabelData", "RetrievalData", "TaskKind", "build_registry", "load_registry", "resolve_dataset"]
