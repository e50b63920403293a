"""``datasets_manifest.yaml``: every dataset vlbench knows, validated on load.

Each entry names a *format* (a registered loader module) and says where the data comes
from, its splits with the expected counts, checksums of fixed annotation files, seeded
subsets, class names/templates, license and citation. Errors name the file, the line and
the key path (``datasets_manifest.yaml:42: datasets.coco.splits.test.images: ...``), from
PyYAML's node marks. Extra manifests (a user's own datasets) can be listed in the
``VLBENCH_MANIFEST`` environment variable (os.pathsep-separated).

Schema of one entry (``?`` = optional)::

    <name>:
      tasks: [retrieval, zeroshot]          # the views it offers
      format: flickr8k                      # a registered loader (harness.datasets.FORMATS)
      source:                               # exactly one kind
        kind: local | hf | generated
        folder?: <under --data-root / VLBENCH_DATA; default: the dataset name>
        layout?: <free text for people>
        id: <hub id>  revision: <commit or tag>   # kind: hf (both required)
      default_split: test
      splits:
        <split>: {images?: N, captions?: N, classification_images?: N, items?: N, partial_ok?: bool,
                  source_split?: <name in the source>, note?: text}
      annotation_sha256?: {<file name>: <64 hex>}
      known_defects?:                       # a release's own faults, so --strict fails only on new ones
        - {file: <name>, sha256: <64 hex of that file>, kind: stray | malformed | encoding | empty |
           duplicate | unknown_image, lines: [N, ...], note: text}
      subsets?: {<dataset name>: {split: <split>, limit: N, seed?: 0}}
      classes?: {names: <key of data/classnames.json> | meta | folders | <file>, templates: <key of
                 data/templates.json> | [<template with {}>...], count?: N}
      options?: {...}                       # the format's own keys, checked by the format
      license: text  citation: text  description?: text  aliases?: [names]
      main_metric?: <a metric key>          # what the dataset is ranked by, when not its task's default
                                            # (DataComp: balanced_acc for Caltech-101, Aircraft, Flowers,
                                            # Pets; mean_R@1 for retrieval)
      language?: <BCP-47 code> | [codes]    # the captions'/prompts' language(s); default en
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.project_files import project_path

from .base import DatasetError, TaskKind, loader_view

MANIFEST_PATH = project_path("datasets_manifest.yaml")  # the checkout's, or the wheel's copy of it
SCHEMA_VERSION = 1
SOURCE_KINDS = ("local", "hf", "generated")
_ENTRY_KEYS = {"tasks", "format", "source", "default_split", "splits", "annotation_sha256", "known_defects", "subsets",
               "classes", "options", "license", "citation", "description", "aliases", "main_metric", "language"}
_REQUIRED = ("tasks", "format", "source", "default_split", "splits", "license", "citation")
_SOURCE_KEYS = {"local": {"kind", "folder", "layout"}, "hf": {"kind", "id", "revision", "folder", "layout"},
                "generated": {"kind", "generator", "version", "seed"}}
_SPLIT_KEYS = {"images", "captions", "classification_images", "items", "partial_ok", "source_split", "note",
               "pairs", "rows"}  # pairs / rows: judged (image, caption) pairs and judgments (human_agreement)


class ManifestError(DatasetError):
    """The manifest is malformed; the message is ``file:line: key.path: what is wrong``."""


@dataclass(frozen=True)
class SplitSpec:
    name: str
    images: int | None = None
    captions: int | None = None
    classification_images: int | None = None
    items: int | None = None  # caption selection: items (true caption + foils, or 2x2 groups)
    partial_ok: bool | None = None  # None: only "train" may load with images missing
    pairs: int | None = None  # human_agreement: judged (image, caption) pairs
    rows: int | None = None   # human_agreement: judgments (Flickr8k-Expert: 3 per pair)
    source_split: str | None = None  # the split's name in the source, when it differs


DEFECT_KINDS = ("stray", "malformed", "encoding", "empty", "duplicate", "unknown_image")


@dataclass(frozen=True)
class KnownDefect:
    """Lines of one exact annotation file (by sha256) that are known to be bad in the
    release: still skipped and reported, but not a ``--strict`` failure."""

    file: str
    sha256: str
    kind: str
    lines: frozenset[int]
    note: str


@dataclass(frozen=True)
class SubsetSpec:
    name: str
    split: str
    limit: int
    seed: int = 0


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    tasks: tuple[TaskKind, ...]
    format: str
    source: dict[str, Any]
    default_split: str
    splits: dict[str, SplitSpec]
    license: str
    citation: str
    description: str = ""
    aliases: tuple[str, ...] = ()
    annotation_sha256: dict[str, str] = field(default_factory=dict)
    known_defects: tuple[KnownDefect, ...] = ()
    subsets: tuple[SubsetSpec, ...] = ()
    classes: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    origin: str = ""  # file:line of the entry
    main_metric: str | None = None  # the metric it is ranked by, when not the task's default
    languages: tuple[str, ...] = ("en",)  # of its captions / class names and templates

    @property
    def folder(self) -> str:
        return self.source.get("folder") or self.name

    def defects_of(self, file: str, sha256: str) -> dict[str, frozenset[int]]:
        """Known bad lines of ``file`` by kind, when its bytes are the release's (sha256)."""
        out: dict[str, frozenset[int]] = {}
        for d in self.known_defects:
            if d.file == file and d.sha256 == sha256:
                out[d.kind] = out.get(d.kind, frozenset()) | d.lines
        return out


class _Node:
    """A YAML node with its key path, for typed reads that fail with file:line:key."""

    def __init__(self, node, path: str, file: str, construct: Callable, mark=None) -> None:
        self.node, self.path, self.file, self._construct = node, path, file, construct
        self.mark = mark or node.start_mark  # the key's position when the node is a value

    @property
    def where(self) -> str:
        return f"{self.file}:{self.mark.line + 1}"

    def fail(self, msg: str) -> None:
        raise ManifestError(f"{self.where}: {self.path}: {msg}")

    def child(self, node, key: str, mark=None) -> _Node:
        return _Node(node, f"{self.path}.{key}" if self.path else key, self.file, self._construct, mark)

    def mapping(self, allowed: set[str] | None = None, required: tuple[str, ...] = ()) -> dict[str, _Node]:
        import yaml

        if not isinstance(self.node, yaml.MappingNode):
            self.fail("must be a mapping (key: value)")
        out: dict[str, _Node] = {}
        for knode, vnode in self.node.value:
            key = self.child(knode, str(knode.value))
            if not isinstance(knode, yaml.ScalarNode):
                key.fail("keys must be plain names")
            if knode.value in out:
                key.fail("duplicate key")
            if allowed is not None and knode.value not in allowed:
                key.fail(f"unknown key; allowed: {', '.join(sorted(allowed))}")
            out[knode.value] = self.child(vnode, knode.value, knode.start_mark)
        for key in required:
            if key not in out:
                self.fail(f"missing required key {key!r}")
        return out

    def value(self) -> Any:
        return self._construct(self.node)

    def text(self) -> str:
        v = self.value()
        if not isinstance(v, str) or not v.strip():
            self.fail(f"must be a non-empty string, got {v!r}")
        return v

    def count(self, optional: bool = True, minimum: int = 0) -> int | None:
        v = self.value()
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            self.fail(f"must be a whole number >= {minimum}" + (" or null" if optional else "") + f", got {v!r}")
        return v

    def flag(self) -> bool:
        v = self.value()
        if not isinstance(v, bool):
            self.fail(f"must be true or false, got {v!r}")
        return v

    def names(self, choices: tuple[str, ...] | None = None) -> list[str]:
        v = self.value()
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
            self.fail(f"must be a name or a non-empty list of names, got {v!r}")
        bad = [x for x in v if choices is not None and x not in choices]
        if bad:
            self.fail(f"unknown value(s) {bad}; allowed: {', '.join(choices)}")
        return v


def _source(n: _Node, name: str) -> dict[str, Any]:
    keys = n.mapping(required=("kind",))
    kind = keys["kind"].text()
    if kind not in SOURCE_KINDS:
        keys["kind"].fail(f"unknown source kind {kind!r}; allowed: {', '.join(SOURCE_KINDS)}")
    n.mapping(allowed=_SOURCE_KEYS[kind], required=("id", "revision") if kind == "hf" else ())
    out: dict[str, Any] = {"kind": kind}
    for key, node in keys.items():
        out[key] = node.count(optional=False) if key in ("version", "seed") else node.text()
    return out


def _splits(n: _Node) -> dict[str, SplitSpec]:
    out = {}
    for split, node in n.mapping().items():
        keys = node.mapping(allowed=_SPLIT_KEYS)
        out[split] = SplitSpec(
            name=split, **{k: keys[k].count() for k in ("images", "captions", "classification_images", "items",
                                                         "pairs", "rows")
               if k in keys},
            **({"partial_ok": keys["partial_ok"].flag()} if "partial_ok" in keys else {}),
            **({"source_split": keys["source_split"].text()} if "source_split" in keys else {}))
    if not out:
        n.fail("needs at least one split")
    return out


def _sha256_text(node: _Node) -> str:
    v = node.text().lower()
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        node.fail("must be a sha256 hex digest (64 hex digits)")
    return v


def _sha256(n: _Node) -> dict[str, str]:
    return {fname: _sha256_text(node) for fname, node in n.mapping().items()}


def _known_defects(n: _Node) -> tuple[KnownDefect, ...]:
    import yaml

    if not isinstance(n.node, yaml.SequenceNode):
        n.fail("must be a list of {file, sha256, kind, lines, note}")
    out = []
    for i, item in enumerate(n.node.value):
        node = n.child(item, str(i))
        keys = node.mapping(allowed={"file", "sha256", "kind", "lines", "note"},
                            required=("file", "sha256", "kind", "lines", "note"))
        sha = _sha256_text(keys["sha256"])
        kind = keys["kind"].text()
        if kind not in DEFECT_KINDS:
            keys["kind"].fail(f"unknown defect kind {kind!r}; allowed: {', '.join(DEFECT_KINDS)}")
        lines = keys["lines"].value()
        if (not isinstance(lines, list) or not lines
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in lines)):
            keys["lines"].fail(f"must be a non-empty list of line numbers (>= 1), got {lines!r}")
        out.append(KnownDefect(keys["file"].text(), sha, kind, frozenset(lines), keys["note"].text()))
    return tuple(out)


def _subsets(n: _Node, splits: dict[str, SplitSpec]) -> tuple[SubsetSpec, ...]:
    out = []
    for sub, node in n.mapping().items():
        keys = node.mapping(allowed={"split", "limit", "seed"}, required=("split", "limit"))
        split = keys["split"].text()
        if split not in splits:
            keys["split"].fail(f"no split {split!r} in this dataset; splits: {', '.join(splits)}")
        seed = keys["seed"].count(optional=False) if "seed" in keys else 0
        out.append(SubsetSpec(sub, split, keys["limit"].count(optional=False, minimum=1), seed))
    return tuple(out)


def _classes(n: _Node, resources: Callable[[str], dict]) -> dict[str, Any]:
    keys = n.mapping(allowed={"names", "templates", "count"}, required=("names", "templates"))
    out: dict[str, Any] = {"names": keys["names"].text()}
    tnode = keys["templates"]
    templates = tnode.value()
    if isinstance(templates, str):
        if templates not in resources("templates"):
            tnode.fail(f"no template set {templates!r} in harness/datasets/data/templates.json")
    elif not (isinstance(templates, list) and templates and all(isinstance(t, str) and "{}" in t for t in templates)):
        tnode.fail("must name a template set or list templates that each hold '{}'")
    out["templates"] = templates
    if "count" in keys:
        out["count"] = keys["count"].count(optional=False, minimum=1)
    return out


def _main_metric(node: _Node) -> str:
    from harness.metrics.keys import MetricKey

    value = node.text()
    known = [k.value for k in MetricKey]
    if value not in known:
        node.fail(f"unknown metric {value!r}; known: {', '.join(known)}")
    return value


def _entry(name: str, n: _Node, formats: Mapping[str, Any], resources: Callable[[str], dict]) -> DatasetSpec:
    keys = n.mapping(allowed=_ENTRY_KEYS, required=_REQUIRED)
    tasks = tuple(TaskKind(t) for t in keys["tasks"].names(tuple(t.value for t in TaskKind)))
    fmt_name = keys["format"].text()
    fmt = formats.get(fmt_name)
    if fmt is None:
        keys["format"].fail(f"unknown format {fmt_name!r}; known: {', '.join(sorted(formats))}")
    missing_views = [t.value for t in tasks if loader_view(t) not in fmt.tasks]
    if missing_views:
        keys["tasks"].fail(f"format {fmt_name!r} has no {', '.join(missing_views)} view")
    splits = _splits(keys["splits"])
    default = keys["default_split"].text()
    if default not in splits:
        keys["default_split"].fail(f"{default!r} is not one of the splits ({', '.join(splits)})")
    options = keys["options"].mapping(allowed=set(fmt.options)) if "options" in keys else {}
    opt_values = {}
    for key, node in options.items():
        v = node.value()
        if not isinstance(v, fmt.options[key]) or isinstance(v, bool) is not (fmt.options[key] is bool):
            node.fail(f"must be of type {fmt.options[key].__name__}, got {v!r}")
        opt_values[key] = v
    classes = _classes(keys["classes"], resources) if "classes" in keys else {}
    main_metric = _main_metric(keys["main_metric"]) if "main_metric" in keys else None
    if TaskKind.ZEROSHOT in tasks and not classes and fmt.needs_classes:
        n.fail("a zeroshot dataset needs 'classes' (names and templates)")
    return DatasetSpec(
        name=name, tasks=tasks, format=fmt_name, source=_source(keys["source"], name), default_split=default,
        splits=splits, license=keys["license"].text(), citation=keys["citation"].text(),
        description=keys["description"].text() if "description" in keys else "",
        aliases=tuple(keys["aliases"].names()) if "aliases" in keys else (),
        annotation_sha256=_sha256(keys["annotation_sha256"]) if "annotation_sha256" in keys else {},
        known_defects=_known_defects(keys["known_defects"]) if "known_defects" in keys else (),
        subsets=_subsets(keys["subsets"], splits) if "subsets" in keys else (),
        classes=classes, options=opt_values, origin=n.where, main_metric=main_metric,
        languages=tuple(keys["language"].names()) if "language" in keys else ("en",))


def parse_manifest(text: str, file: str, formats: Mapping[str, Any],
                   resources: Callable[[str], dict]) -> list[DatasetSpec]:
    """Validate manifest text; ``formats`` maps format names to objects with ``tasks``,
    ``options`` (allowed option -> type) and ``needs_classes``."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ManifestError(f"{file}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()
    if node is None:
        raise ManifestError(f"{file}: empty manifest")
    root = _Node(node, "", file, lambda n: loader.construct_object(n, deep=True))
    top = root.mapping(allowed={"schema_version", "datasets"}, required=("schema_version", "datasets"))
    if top["schema_version"].value() != SCHEMA_VERSION:
        top["schema_version"].fail(f"this vlbench reads schema_version {SCHEMA_VERSION}")
    return [_entry(name, n, formats, resources) for name, n in top["datasets"].mapping().items()]


def manifest_paths() -> list[Path]:
    """The project manifest, then any listed in ``VLBENCH_MANIFEST``."""
    extra = [Path(p) for p in os.environ.get("VLBENCH_MANIFEST", "").split(os.pathsep) if p]
    return [MANIFEST_PATH, *extra]


def load_manifest(path: Path, formats: Mapping[str, Any], resources: Callable[[str], dict]) -> list[DatasetSpec]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the dataset manifest: {exc}") from None
    return parse_manifest(text, str(path), formats, resources)
