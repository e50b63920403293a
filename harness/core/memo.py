"""An in-process memo of per-item feature rows (named tensors), least recently used out.

Frozen towers shared by several models and tasks (the fusion designs' EfficientNet + MiniLM)
see the same images and texts again in one sweep; a row computed once is served from here
after. Rows must be a function of the item alone (``harness.models.fusion.towers`` runs its
towers in fixed micro-batches so that they are), and keys must hold everything the row
depends on. A run that was served rows says so to its timing stage
(:func:`harness.core.measure.note_reused`): such a stage reports no items/s.

One memo per name and process (:func:`process_memo`); ``VLBENCH_TOWER_MEMO_MB`` bounds the
memory each keeps (default 2048; 0 turns them off). :func:`clear_all` forgets every row: the
throughput benchmarks call it so both of their sides do the whole work, the tests after each test.

    >>> import torch
    >>> memo = RowMemo(max_bytes=64)
    >>> memo.put("a", {"x": torch.ones(4)})      # 16 bytes
    >>> memo.get("a")["x"].tolist(), memo.get("b")
    ([1.0, 1.0, 1.0, 1.0], None)
    >>> for k in "bcde": memo.put(k, {"x": torch.zeros(4)})   # 80 bytes > 64: "a" goes first
    >>> memo.get("a") is None, memo.get("e") is not None, memo.nbytes
    (True, True, 64)
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

ENV = "VLBENCH_TOWER_MEMO_MB"
DEFAULT_MB = 2048


def configured_bytes() -> int:
    """``$VLBENCH_TOWER_MEMO_MB`` in bytes (default 2048 MB; 0 turns memoisation off)."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_MB * 2**20
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"{ENV}={raw!r}: expected a number of megabytes (0 turns the memo off)") from None
    if mb < 0:
        raise ValueError(f"{ENV}={raw!r}: expected a number of megabytes >= 0")
    return int(mb * 2**20)


def _row_bytes(row: dict[str, Any]) -> int:
    return sum(t.numel() * t.element_size() for t in row.values())


class RowMemo:
    """key -> {name: tensor} rows, at most ``max_bytes`` of tensor data held."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._rows: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._rows.get(key)
        if row is not None:
            self._rows.move_to_end(key)
        return row

    def put(self, key: str, row: dict[str, Any]) -> None:
        size = _row_bytes(row)
        if size > self.max_bytes:
            return
        old = self._rows.pop(key, None)
        if old is not None:
            self.nbytes -= _row_bytes(old)
        self._rows[key] = row
        self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, dropped = self._rows.popitem(last=False)
            self.nbytes -= _row_bytes(dropped)

    def clear(self) -> None:
        self._rows.clear()
        self.nbytes = 0


_MEMOS: dict[str, RowMemo] = {}


def process_memo(name: str) -> RowMemo:
    """This process's memo called ``name``, made (sized by the environment) on first use."""
    if name not in _MEMOS:
        _MEMOS[name] = RowMemo(configured_bytes())
    return _MEMOS[name]


def clear_all() -> None:
    for m in _MEMOS.values():
        m.clear()


def reset() -> None:
    """Drop every memo, so the next :func:`process_memo` reads the environment again."""
    _MEMOS.clear()
