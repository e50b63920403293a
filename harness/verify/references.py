"""The table of published reference values (``references.yaml`` next to this module, shipped
in the wheel): read, validated, every value with its source.

    >>> refs = load()
    >>> ref = next(r for r in refs if r.id == "openclip-vit-b-32-openai-flickr30k")
    >>> ref.metrics["i2t_R@1"], ref.tolerance, ref.source["commit"][:8]
    (78.9, 0.5, 'f862f86c')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import UserError

TABLE = Path(__file__).resolve().parent / "references.yaml"
SCHEMA_VERSION = 1
PROTOCOL_KEYS = ("full_split", "counts", "precision", "activation", "scorer", "kendall", "text_prompt")
# what each kind of source must name so that a reader can find the number
# (an "issue" is a maintainer's or author's comment in a repository's issue thread that states the
# numbers as text, where the paper shows them only in a table image or not broken down)
SOURCE_FIELDS = {"repository": ("repo", "path", "commit", "row", "columns"),
                 "paper": ("title", "authors", "venue", "table"),
                 "issue": ("repo", "url", "author", "date", "row")}


class ReferenceError(UserError):
    """The reference table is malformed; the message names the file, entry and field."""


@dataclass(frozen=True)
class Reference:
    id: str
    models: tuple[str, ...]
    dataset: str
    split: str
    task: str
    metrics: dict[str, float]
    tolerance: float
    why: str
    source: dict[str, str]
    checked: str
    protocol: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    def cite(self) -> str:
        """One line naming where the numbers come from."""
        s = self.source
        if s["kind"] == "repository":
            return f"{s['repo']} {s['path']} @ {s['commit'][:12]} ({s['row']})"
        if s["kind"] == "issue":
            return f"{s['url']} ({s['author']}, {s['date']}: {s['row']})"
        return f"{s['title']}, {s['venue']}, {s['table']}"

    @property
    def rechecked(self) -> bool:
        """False when the table says the number was not re-read against its source."""
        return not self.checked.lstrip().lower().startswith("not ")


def load(path: Path = TABLE) -> list[Reference]:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ReferenceError(f"cannot read the reference table {path} ({exc})") from None
    if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
        raise ReferenceError(f"{path}: expected a mapping with schema_version {SCHEMA_VERSION}")
    entries = raw.get("references")
    if not isinstance(entries, list) or not entries:
        raise ReferenceError(f"{path}: 'references' must be a non-empty list")
    refs = [_parse(e, f"{path}: references[{i}]") for i, e in enumerate(entries)]
    ids = [r.id for r in refs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ReferenceError(f"{path}: duplicate reference id(s) {', '.join(dup)}")
    return refs


def _parse(e: Any, where: str) -> Reference:
    if not isinstance(e, dict):
        raise ReferenceError(f"{where}: must be a mapping")
    where = f"{where} ({e.get('id', '?')})"

    def text(key: str, d: dict = e, at: str = "") -> str:
        v = d.get(key)
        if not isinstance(v, str) or not v.strip():
            raise ReferenceError(f"{where}: {at}{key} must be a non-empty string, got {v!r}")
        return v.strip()

    models = e.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
        raise ReferenceError(f"{where}: models must be a non-empty list of model names")
    metrics = e.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ReferenceError(f"{where}: metrics must be a non-empty mapping")
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ReferenceError(f"{where}: metrics.{k} must be a finite number, got {v!r}")
    tol = e.get("tolerance")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (math.isfinite(tol) and tol > 0):
        raise ReferenceError(f"{where}: tolerance must be a positive number, got {tol!r}")
    protocol = e.get("protocol") or {}
    unknown = set(protocol) - set(PROTOCOL_KEYS) if isinstance(protocol, dict) else {"(not a mapping)"}
    if unknown:
        raise ReferenceError(f"{where}: protocol has unknown key(s) {sorted(unknown)}; known: {PROTOCOL_KEYS}")
    return Reference(id=text("id"), models=tuple(models), dataset=text("dataset"), split=text("split"),
                     task=text("task"), metrics={k: float(v) for k, v in metrics.items()}, tolerance=float(tol),
                     why=text("why"), source=_source(e.get("source"), where), checked=text("checked"),
                     protocol=dict(protocol), notes=str(e.get("notes") or "").strip())


def _source(s: Any, where: str) -> dict[str, str]:
    if not isinstance(s, dict) or s.get("kind") not in SOURCE_FIELDS:
        raise ReferenceError(f"{where}: source must be a mapping with kind {' or '.join(SOURCE_FIELDS)}")
    missing = [k for k in SOURCE_FIELDS[s["kind"]] if not isinstance(s.get(k), str) or not s[k].strip()]
    if missing:
        raise ReferenceError(f"{where}: the {s['kind']} source must name {', '.join(missing)}")
    if s["kind"] == "issue" and not s["url"].startswith(f"https://github.com/{s['repo']}/issues/"):
        raise ReferenceError(f"{where}: source.url must be an issue of {s['repo']}, got {s['url']!r}")
    if s["kind"] == "repository" and not (len(s["commit"]) == 40 and all(c in "0123456789abcdef" for c in s["commit"])):
        raise ReferenceError(f"{where}: source.commit must be a full 40-hex commit, got {s['commit']!r}")
    return {k: str(v).strip() for k, v in s.items()}


_TABLE: list[Reference] | None = None


def cached_table() -> list[Reference]:
    """The shipped table, read once per process (the leaderboard asks for every row)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = load()
    return _TABLE
