"""Curated class names and prompt templates shipped as JSON in ``harness/datasets/data``
(see its README for their source and license)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources as _res

from .base import DatasetError


@lru_cache(maxsize=4)
def resource(kind: str) -> dict[str, list[str]]:
    """``kind`` is "classnames" or "templates": {dataset key: [strings]}."""
    text = _res.files("harness.datasets").joinpath("data", f"{kind}.json").read_text(encoding="utf-8")
    return json.loads(text)


def templates(value: str | list[str]) -> list[str]:
    """A template set by name (``{c}`` in the JSON becomes ``{}``), or an explicit list."""
    if isinstance(value, list):
        return list(value)
    try:
        return [t.replace("{c}", "{}") for t in resource("templates")[value]]
    except KeyError:
        raise DatasetError(f"no template set {value!r} in harness/datasets/data/templates.json") from None


def classnames(key: str) -> list[str] | None:
    """A curated class-name list by dataset key (e.g. ``imagenet1k``), or None."""
    return resource("classnames").get(key)


def read_names_file(path) -> list[str]:
    """One class name per line (blank lines ignored); the file must be UTF-8."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(f"class-names file {path} not found") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from None
    names = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DatasetError(f"{path}: class name {dup!r} appears twice")
    return names


def resolve_classnames(spec, root, folders: list[str] | None = None) -> list[str]:
    """The manifest's ``classes.names``: a curated list key (``imagenet1k``), ``folders``
    (folder names, ``_`` read as a space), or a names file relative to the dataset root.
    With ``folders`` given, the list must have one name per folder (sorted folder order)."""
    key = spec.classes.get("names", "folders")
    if key == "folders":
        if folders is None:
            raise DatasetError(f"{spec.origin}: {spec.name}: classes.names 'folders' needs an image-folder layout")
        return [f.replace("_", " ") for f in folders]
    names = classnames(key)
    source = f"curated list {key!r}"
    if names is None:
        names, source = read_names_file(root / key), str(root / key)
    if folders is not None and len(names) != len(folders):
        raise DatasetError(f"{spec.name}: {len(folders)} class folders under {root} but {len(names)} names "
                           f"in the {source}")
    if "count" in spec.classes and len(names) != spec.classes["count"]:
        raise DatasetError(f"{spec.name}: {len(names)} class names in the {source}, the manifest expects "
                           f"{spec.classes['count']}")
    return names
