"""ResultRecord: what one run leaves behind (one JSON file per run in the store)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1


class RecordError(ValueError):
    pass


@dataclass
class StageTiming:
    """One stage of a run (image encode, text encode, scoring, ...)."""

    seconds: float                 # wall time of the stage, warm-up included
    items: int                     # images, texts, queries or pairs processed (cached ones included)
    items_per_s: float | None      # measured after warm-up when there was one; None when nothing was
                                   # computed (all items from the embedding cache): not model throughput
    batches: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50/p90/p99 per batch, warm-up excluded
    peak_device_mem_mb: float | None = None
    peak_rss_mb: float | None = None
    cached: bool = False           # every item came from the embedding cache
    cached_items: int = 0          # items read from the embedding cache (not in items_per_s)
    batch_size: int | None = None  # batch size asked for (encode stages)
    batch_size_final: int | None = None  # after CUDA out-of-memory back-off (= batch_size if none)
    oom_backoffs: int = 0          # times the batch was halved after an out-of-memory error
    token_limit: int | None = None  # text stages: the model's token limit (None: the adapter does not say)
    truncated: int | None = None    # texts longer than token_limit, cut by the tokenizer (None: not counted)


@dataclass
class ResultRecord:
    """One run of one model on one dataset split and task. See DESIGN.md for the fields."""

    model: dict[str, Any]          # name, family, kind, source, checkpoint, checkpoint_sha256, params
    dataset: dict[str, Any]        # name, split, fingerprint, images, captions/classes, subset, dropped
    task: str                      # "retrieval" | "zeroshot"
    options: dict[str, Any]        # batch_size, precision, device, seed, limit, ...
    metrics: dict[str, float]      # keys from harness.metrics.MetricKey
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
