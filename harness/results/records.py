"""ResultRecord: what one run leaves behind (one JSON file per run in the store)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from harness.core.errors import UserError
from harness.core.measure import StageTiming  # noqa: F401 - records hold them; importers read it here

SCHEMA_VERSION = 1


class RecordError(UserError, ValueError):
    pass


@dataclass
class ResultRecord:
    """One run of one model on one dataset split and task. See docs/architecture.md for the fields."""

    model: dict[str, Any]          # name, family, kind, source, checkpoint, checkpoint_sha256, params
    dataset: dict[str, Any]        # name, split, fingerprint, images, captions/classes, subset, dropped
    task: str                      # "retrieval" | "zeroshot"
    options: dict[str, Any]        # batch_size, precision, device, seed, limit, ...
    metrics: dict[str, float]      # keys from harness.metrics.functional.MetricKey
    main_metric: str
    timings: dict[str, StageTiming]
    memory: dict[str, float]       # peak_rss_mb, peak_device_mem_mb
    environment: dict[str, Any]    # harness version, git sha, torch/cuda, device name, host
    created_at: str                # ISO 8601, UTC
    runtime_s: float
    run_key: str                   # stable id of (model, dataset, split, task, options)
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str = "record") -> ResultRecord:
        if not isinstance(raw, dict):
            raise RecordError(f"{origin}: a record is a JSON object, not {type(raw).__name__}")
        version = raw.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RecordError(f"{origin}: schema_version {version!r}, this vlbench reads {SCHEMA_VERSION}")
        try:
            timings = {k: StageTiming(**v) for k, v in raw["timings"].items()}
            fields = {k: raw[k] for k in cls.__dataclass_fields__ if k != "timings"}
        except (KeyError, TypeError) as exc:
            raise RecordError(f"{origin}: malformed record ({exc})") from None
        return cls(timings=timings, **fields)
