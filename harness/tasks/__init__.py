"""The task registry. Each task lives in one module that registers itself (``@register`` on
its :class:`~harness.tasks.base.Task` subclass); adding a task is that module plus its line
here. Task modules import torch only inside functions, so listing tasks stays instant."""

from importlib import import_module

from harness.tasks.base import TASKS, Task, TaskResult, register

TASK_MODULES = ("retrieval", "zeroshot", "caption_selection", "human_agreement", "linear_probe",
                "image_text_classification", "captioning")

for _module in TASK_MODULES:
    import_module(f"harness.tasks.{_module}")

__all__ = ["TASKS", "Task", "TaskResult", "register"]
