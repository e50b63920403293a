"""Timing and memory per stage, following DESIGN.md's timing rules.

A :class:`Stage` measures wall time over the whole stage and, per batch, the latency of the
model call with the device synchronised before every clock read. The first ``warmup``
batches are excluded from latency percentiles and items/s (lazy init, autotuning and
allocator growth would otherwise be charged to the model). Peak device memory is reset at
the start of each stage; peak host RSS is reset too where Linux allows it (clear_refs).
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from dataclasses import dataclass, field

from harness.records import StageTiming


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
    with contextlib.suppress(OSError):  # not Linux, or not permitted: the peak stays cumulative
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def percentiles(values_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99 (linear interpolation, as numpy's default) of per-batch latencies."""
    if not values_ms:
        return {}
    xs = sorted(values_ms)

    def q(p: float) -> float:
        pos = (len(xs) - 1) * p
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return {"p50": q(0.50), "p90": q(0.90), "p99": q(0.99)}


@dataclass
class Stage:
    """Use as ``with Stage("image_encode", device) as st: ... with st.batch(n): model(x)``."""

    name: str
    device: str = "cpu"
    warmup: int = 1
    _latencies: list[float] = field(default_factory=list)
    _items: int = 0
    _warm_items: int = 0
    _warm_start: float | None = None
    _start: float = 0.0
    _end: float = 0.0
    _peak_dev_mb: float | None = None
    _peak_rss_mb: float | None = None

    def __enter__(self) -> "Stage":
        if str(self.device).startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        reset_peak_rss()
        _sync(self.device)
        self._start = time.perf_counter()
        if self.warmup == 0:
            self._warm_start = self._start
        return self

    def __exit__(self, *exc) -> None:
        _sync(self.device)
        self._end = time.perf_counter()
        if str(self.device).startswith("cuda"):
            import torch

            self._peak_dev_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        self._peak_rss_mb = peak_rss_mb()

    @contextlib.contextmanager
    def batch(self, n_items: int):
        """Time one batch of ``n_items``; the block should end with the result on the host
        or call nothing asynchronous past it (we synchronise anyway)."""
        _sync(self.device)
        t0 = time.perf_counter()
        yield
        _sync(self.device)
        t1 = time.perf_counter()
        index = len(self._latencies)
        self._latencies.append((t1 - t0) * 1000)
        self._items += n_items
        if index == self.warmup - 1:
            self._warm_start = t1
        elif index >= self.warmup:
            self._warm_items += n_items

    def add_items(self, n_items: int) -> None:
        """Count items of a stage that has no batches (e.g. one scoring call)."""
        self._items += n_items

    def timing(self) -> StageTiming:
        seconds = self._end - self._start
        measured = self._latencies[self.warmup:]
        if measured and self._warm_start is not None:
            span = self._end - self._warm_start
            ips = self._warm_items / span if span > 0 else 0.0
        else:  # too few batches to exclude a warm-up: report the whole stage
            ips = self._items / seconds if seconds > 0 else 0.0
        return StageTiming(
            seconds=seconds,
            items=self._items,
            items_per_s=ips,
            batches=len(self._latencies),
            latency_ms=percentiles(measured or self._latencies),
            peak_device_mem_mb=self._peak_dev_mb,
            peak_rss_mb=self._peak_rss_mb,
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
