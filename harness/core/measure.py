"""Timing and memory per stage, following the timing rules of docs/architecture.md.

A :class:`Stage` measures wall time over the whole stage and, per batch, the latency of the
model call with the device synchronised before every clock read. The first ``warmup``
batches are excluded from latency percentiles and items/s (lazy init, autotuning and
allocator growth would otherwise be charged to the model). Peak device memory is reset at
the start of each stage; peak host RSS is reset too where Linux allows it (clear_refs).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import resource
import time
from dataclasses import dataclass, field

# the stages open in this context, innermost last: note_reused() tells each of them
_OPEN_STAGES: contextvars.ContextVar[tuple[Stage, ...]] = contextvars.ContextVar("open_stages", default=())


def note_reused(n_items: int) -> None:
    """A model served ``n_items`` items partly from memoised features (``harness.core.memo``):
    every stage open now ran less than the whole model for them, so none of them reports a
    speed (items/s, latency). Outside any stage this is a no-op."""
    if n_items > 0:
        for stage in _OPEN_STAGES.get():
            stage._reused_items += n_items


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
    reused_items: int = 0           # items served partly from memoised tower features (note_reused):
                                    # the stage then has no items/s and no latency

    @property
    def measured(self) -> bool:
        """Whether items/s is the model's own speed: nothing from the embedding cache, no reuse."""
        return not self.cached and not self.cached_items and not self.reused_items


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (since the last reset, on Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:  # not Linux/not permitted
        f.write("5")  # the peak stays cumulative then


def percentiles(values_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99 (numpy's default linear interpolation) of per-batch latencies."""
    if not values_ms:
        return {}
    import numpy as np  # loaded already by any run (torch); kept out of this module's import

    p50, p90, p99 = np.percentile(np.asarray(values_ms, dtype=np.float64), [50, 90, 99]).tolist()
    return {"p50": p50, "p90": p90, "p99": p99}


@dataclass
class Stage:
    """Use as ``with Stage("image_encode", device) as st: ... with st.batch(n): model(x)``.

    On CPU a batch is timed with two clock reads. On CUDA a batch is timed with a pair of
    CUDA events and the device is synchronised only at the stage's ends and once after the
    warm-up: a synchronisation per batch would stall the host while the GPU drains its
    queue and so slow the very run being measured. Events give the device time of each
    batch, read after the closing synchronisation.
    """

    name: str
    device: str = "cpu"
    warmup: int = 1
    _latencies: list[float] = field(default_factory=list)
    _events: list = field(default_factory=list)  # CUDA (start, end) event pairs, read at exit
    _items: int = 0
    _warm_items: int = 0
    _warm_start: float | None = None
    _start: float = 0.0
    _end: float = 0.0
    _peak_dev_mb: float | None = None
    _peak_rss_mb: float | None = None
    _cached_items: int = 0
    _batch_size: int | None = None
    _batch_size_final: int | None = None
    _oom_backoffs: int = 0
    _token_limit: int | None = None
    _truncated: int | None = None
    _reused_items: int = 0
    _open_token: contextvars.Token | None = None

    def __post_init__(self) -> None:
        self._cuda = str(self.device).startswith("cuda")

    def __enter__(self) -> Stage:  # noqa: PYI034 - typing.Self needs 3.11
        if self._cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        reset_peak_rss()
        self._open_token = _OPEN_STAGES.set((*_OPEN_STAGES.get(), self))
        _sync(self.device)
        self._start = time.perf_counter()
        if self.warmup == 0:
            self._warm_start = self._start
        return self

    def __exit__(self, *exc) -> None:
        _sync(self.device)
        self._end = time.perf_counter()
        if self._open_token is not None:
            _OPEN_STAGES.reset(self._open_token)
            self._open_token = None
        if self._cuda:
            import torch

            self._peak_dev_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            self._latencies.extend(a.elapsed_time(b) for a, b in self._events)
            self._events.clear()
        self._peak_rss_mb = peak_rss_mb()

    @contextlib.contextmanager
    def batch(self, n_items: int):
        """Time one batch of ``n_items``. A batch that raises is not counted (its time stays
        in the stage's wall time): an out-of-memory retry is not a measured batch."""
        index = len(self._latencies) + len(self._events)
        if self._cuda:
            import torch

            pair = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            pair[0].record()
            yield
            pair[1].record()
            self._events.append(pair)
            if index == self.warmup - 1:
                _sync(self.device)  # once per stage: items/s is counted from the warm-up's end
        else:
            t0 = time.perf_counter()
            yield
            t1 = time.perf_counter()
            self._latencies.append((t1 - t0) * 1000)
        self._items += n_items
        if index == self.warmup - 1:
            self._warm_start = time.perf_counter()
        elif index >= self.warmup:
            self._warm_items += n_items

    def add_items(self, n_items: int) -> None:
        """Count items of a stage that has no batches (e.g. one scoring call)."""
        self._items += n_items

    def add_cached(self, n_items: int) -> None:
        """Items served by the embedding cache: counted in ``items``, never in items/s."""
        self._cached_items += n_items

    def set_batching(self, requested: int, final: int, oom_backoffs: int) -> None:
        self._batch_size, self._batch_size_final, self._oom_backoffs = requested, final, oom_backoffs

    def set_truncation(self, token_limit: int, truncated: int) -> None:
        """Texts this stage's model cuts at its token limit (harness.models.text_limits)."""
        self._token_limit, self._truncated = token_limit, truncated

    def timing(self) -> StageTiming:
        seconds = self._end - self._start
        measured = self._latencies[self.warmup:]
        if (self._items == 0 and self._cached_items) or self._reused_items:
            ips = None  # a cache hit or reused features: not the model's throughput
        elif measured and self._warm_start is not None:
            span = self._end - self._warm_start
            ips = self._warm_items / span if span > 0 else 0.0
        else:  # too few batches to exclude a warm-up: report the whole stage
            ips = self._items / seconds if seconds > 0 else 0.0
        return StageTiming(
            seconds=seconds,
            items=self._items + self._cached_items,
            items_per_s=ips,
            batches=len(self._latencies),
            latency_ms={} if self._reused_items else percentiles(measured or self._latencies),
            peak_device_mem_mb=self._peak_dev_mb,
            peak_rss_mb=self._peak_rss_mb,
            cached=self._items == 0 and self._cached_items > 0,
            cached_items=self._cached_items,
            batch_size=self._batch_size,
            batch_size_final=self._batch_size_final,
            oom_backoffs=self._oom_backoffs,
            token_limit=self._token_limit,
            truncated=self._truncated,
            reused_items=self._reused_items,
        )


def default_workers(device: str = "cpu") -> int:
    """Data-loader workers. On CUDA the cores are free for decoding: all but one, at most 8.
    On CPU the model's threads use the cores, and a worker process competes with them: on 2
    cores one worker cut end-to-end image throughput from 858/s to 697/s (benchmarks/
    overhead.py), so small machines decode in the main process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if str(device).startswith("cuda"):
        return max(0, min(8, cores - 1))
    return 0 if cores <= 4 else min(8, cores // 4)
