"""Named suites: which models x datasets x tasks a sweep runs. Defined as YAML files in
``benchmarks/suites/`` (a wheel carries copies: harness.core.project_files), found lazily, on first
use, never at import."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import UserError
from harness.core.project_files import project_path
from harness.core.registry import Registry
from harness.run.aggregate import AggregateError, AggregateSpec, parse_aggregate


class SuiteError(UserError, ValueError):
    pass


@dataclass(frozen=True)
class SuiteEntry:
    model: str
    dataset: str
    task: str
    split: str | None = None
    limit: int | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    entries: tuple[SuiteEntry, ...]
    path: str = ""
    options: dict = field(default_factory=dict)  # run options shared by every entry (batch_size, ...)
    aggregate: AggregateSpec | None = None  # the suite score, when declared (harness.run.aggregate)


def suite_dirs() -> list[Path]:
    """``VLBENCH_SUITES`` (os.pathsep-separated), then the project's ``benchmarks/suites`` (a
    wheel's copy of it when installed from one: harness.core.project_files)."""
    dirs = [Path(p) for p in os.environ.get("VLBENCH_SUITES", "").split(os.pathsep) if p]
    dirs.append(project_path("benchmarks/suites"))
    return [d for d in dirs if d.is_dir()]


_KNOWN_KEYS = {"name", "description", "runs", "options", "aggregate"}
_RUN_KEYS = {"models", "datasets", "tasks", "split", "limit"}


def parse_suite(raw: object, origin: str) -> Suite:
    """A suite file: ``runs`` is a list of {models, datasets, tasks, split?, limit?} blocks,
    each expanded to the cross product."""
    if not isinstance(raw, dict) or not isinstance(raw.get("runs"), list) or not raw["runs"]:
        raise SuiteError(f"{origin}: a suite is a mapping with a non-empty 'runs' list")
    unknown = set(raw) - _KNOWN_KEYS
    if unknown:
        raise SuiteError(f"{origin}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_KNOWN_KEYS)}")
    entries = []
    for i, block in enumerate(raw["runs"]):
        where = f"{origin}: runs[{i}]"
        if not isinstance(block, dict):
            raise SuiteError(f"{where}: must be a mapping")
        bad = set(block) - _RUN_KEYS
        if bad:
            raise SuiteError(f"{where}: unknown key(s) {sorted(bad)}; allowed: {sorted(_RUN_KEYS)}")
        lists = {}
        for key in ("models", "datasets", "tasks"):
            value = block.get(key)
            if isinstance(value, str):
                value = [value]
            if not value or not all(isinstance(v, str) for v in value):
                raise SuiteError(f"{where}: '{key}' must be a name or a list of names")
            lists[key] = value
        for m in lists["models"]:
            for d in lists["datasets"]:
                for t in lists["tasks"]:
                    entries.append(SuiteEntry(m, d, t, block.get("split"), block.get("limit")))
    name = raw.get("name") or Path(origin).stem
    try:
        aggregate = parse_aggregate(raw["aggregate"], str(name), origin) if "aggregate" in raw else None
    except AggregateError as exc:
        raise SuiteError(str(exc)) from None
    return Suite(str(name), str(raw.get("description", "")), tuple(entries), origin, dict(raw.get("options") or {}),
                 aggregate)


def load_suite_file(path: Path) -> Suite:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SuiteError(f"{path}: cannot read suite: {exc}") from None
    return parse_suite(raw, str(path))


_SUITES: Registry[Path] | None = None


def suites() -> Registry[Path]:
    """Suite name -> file. Built on first call by listing the suite folders."""
    global _SUITES
    if _SUITES is None:
        reg: Registry[Path] = Registry("suite")
        for d in suite_dirs():
            for path in sorted(d.glob("*.y*ml")):
                if path.stem not in reg:
                    reg.register(path.stem, path)
        _SUITES = reg
    return _SUITES


def get_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return load_suite_file(path)
    return load_suite_file(suites().get(name_or_path))
