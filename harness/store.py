"""Results store: one JSON file per run, written atomically, found again by run key."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from harness.records import RecordError, ResultRecord

DEFAULT_RESULTS = "results"


def results_dir(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("VLBENCH_RESULTS") or DEFAULT_RESULTS)


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", part).strip("-") or "x"


def record_path(root: Path, model: str, dataset: str, split: str, task: str, run_key: str) -> Path:
    """``<root>/<dataset>/<task>/<model>__<split>__<key>.json``: readable, and unique by key."""
    return root / _safe(dataset) / task / f"{_safe(model)}__{_safe(split)}__{run_key[:12]}.json"


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, then rename: a reader never sees half
    a file, and a crash leaves the previous version (or nothing) in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, payload: dict) -> Path:
    """``payload`` as indented JSON, written atomically (:func:`write_bytes_atomic`)."""
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=True) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


def read_record(path: Path) -> ResultRecord:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: unreadable record ({exc})") from None
    return ResultRecord.from_dict(raw, origin=str(path))


def save(root: Path, record: ResultRecord, per_query: dict | None = None) -> Path:
    """Write the record, and beside it (``.queries.json``) the per-query outcomes that
    bootstrap intervals are computed from without re-running the model."""
    path = record_path(root, record.model["name"], record.dataset["name"], record.dataset["split"],
                       record.task, record.run_key)
    if per_query:
        sidecar = sidecar_text({"run_key": record.run_key, **per_query})
        write_bytes_atomic(queries_path(path), sidecar.encode("utf-8"))
    return write_json_atomic(path, record.to_dict())


def sidecar_text(payload: dict) -> str:
    """A JSON object with one key per line and each value compact: per-query lists run to
    thousands of numbers, which indented JSON puts one per line (about twice the bytes).

    >>> print(sidecar_text({"run_key": "k", "pred": [3, 1], "label": [3, 2]}))
    {
    "label":[3,2],
    "pred":[3,1],
    "run_key":"k"
    }
    <BLANKLINE>
    """
    lines = [f"{json.dumps(str(k))}:{json.dumps(v, separators=(',', ':'), allow_nan=True)}"
             for k, v in sorted(payload.items())]
    return "{\n" + ",\n".join(lines) + "\n}\n"


QUERIES_SUFFIX = ".queries.json"


def queries_path(record_path: Path) -> Path:
    """``.../name.json`` -> ``.../name.queries.json``: the per-query sidecar of a record."""
    return record_path.with_name(record_path.stem + QUERIES_SUFFIX)


def iter_record_files(root: Path) -> list[Path]:
    """Every record under ``root``; skips dot-files and dot-folders (in-flight atomic
    writes, caches) and the per-query sidecars."""
    def hidden(path: Path) -> bool:
        return any(part.startswith(".") for part in path.relative_to(root).parts)

    return sorted(p for p in root.rglob("*.json")
                  if p.is_file() and not hidden(p) and not p.name.endswith(QUERIES_SUFFIX))
