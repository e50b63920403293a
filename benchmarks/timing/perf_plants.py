"""Planted slowdowns for the throughput-ratio gate's tests: each a realistic regression,
sized to make its path about 3x slower whatever the machine's load, so the gate's
verdict is unambiguous on a busy machine."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from harness.core.measure import Stage


def sleep_per_batch(monkeypatch, factor: float = 2.0) -> None:
    """After each measured batch, sleep ``factor`` times as long as the batch cycle took since
    the previous one ended (decode, preprocess, model call): a per-batch stall (a progress
    bar's redraw, a blocking log write) that makes the loop 1 + factor times slower at any load."""
    original = Stage.batch
    last: dict[int, float] = {}

    @contextlib.contextmanager
    def batch(self, n_items):
        start = last.setdefault(id(self), self._start)
        with original(self, n_items):
            yield
        time.sleep(factor * max(0.0, time.perf_counter() - start))
        last[id(self)] = time.perf_counter()

    monkeypatch.setattr(Stage, "batch", batch)


def extra_device_sync(monkeypatch) -> None:
    """A ``torch.cuda.synchronize`` after every batch (CUDA only: on CPU a sync is a no-op)."""
    import torch

    original = Stage.batch

    @contextlib.contextmanager
    def batch(self, n_items):
        with original(self, n_items):
            yield
        torch.cuda.synchronize()

    monkeypatch.setattr(Stage, "batch", batch)


def copy_embeddings(monkeypatch, copies: int = 3) -> None:
    """Scoring copies both embedding matrices through Python lists (as code that serialises
    them on the way would), ``copies`` times, before ranking."""
    import torch

    from harness.metrics import functional as M

    original = M.retrieval_ranks

    def retrieval_ranks(image_emb, text_emb, *args, **kwargs):
        for _ in range(copies):
            image_emb, text_emb = (torch.tensor(x.tolist(), dtype=torch.float64).float() for x in (image_emb, text_emb))
        return original(image_emb, text_emb, *args, **kwargs)

    monkeypatch.setattr(M, "retrieval_ranks", retrieval_ranks)


SLOW_EXIT = """import atexit, time
_t0 = time.perf_counter()
atexit.register(lambda: time.sleep({factor} * (time.perf_counter() - _t0)))
"""


def slow_process_exit(tmp: Path, factor: float = 2.0) -> str:
    """A folder whose sitecustomize makes the process wait at exit ``factor`` times as long as
    it ran (a non-daemon thread joined at shutdown): put first on PYTHONPATH, the wall time
    grows 1 + factor times."""
    folder = Path(tmp) / "plant"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SLOW_EXIT.format(factor=factor), encoding="utf-8")
    return str(folder)
