"""What every task returns, and how a task is described in the registry."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from harness.datasets.base import TaskKind
from harness.records import StageTiming


@dataclass
class TaskResult:
    metrics: dict[str, float]
    main_metric: str
    timings: dict[str, StageTiming]
    per_query: dict[str, list] = field(default_factory=dict)  # ranks / correctness, for bootstrap
    details: dict[str, Any] = field(default_factory=dict)  # how the task ran (lands in record.options)


@dataclass(frozen=True)
class TaskMeta:
    name: str
    kind: TaskKind
    main_metric: str
    evaluator: str  # "module:function", imported only when a run needs it
    description: str = ""
    cross_encoders: bool = False  # cross-encoders run it too (a sweep with no task picks it for them)

    def evaluate(self, model, data, opts, **extra) -> TaskResult:
        module, func = self.evaluator.split(":")
        return getattr(importlib.import_module(module), func)(model, data, opts, **extra)


def require_dual(model: Any, task: str) -> None:
    from harness.interfaces import DualEncoder

    if not isinstance(model, DualEncoder):
        # ValueError: the CLI reports it as one user-error line, not an internal error
        raise ValueError(f"{task} needs a dual encoder; {getattr(model, 'name', model)!r} is not one")
