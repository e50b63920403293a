"""Task registry: retrieval, zero-shot classification, caption selection."""

from harness.datasets.base import TaskKind
from harness.registry import Registry
from harness.tasks.base import TaskMeta, TaskResult

TASKS: Registry[TaskMeta] = Registry("task")
TASKS.register("retrieval", TaskMeta(
    "retrieval", TaskKind.RETRIEVAL, "rsum", "harness.tasks.retrieval:evaluate",
    "image<->text retrieval; R@1/5/10 both directions (hit rate), RSUM, median/mean rank"), aliases=("ret",))
TASKS.register("zeroshot", TaskMeta(
    "zeroshot", TaskKind.ZEROSHOT, "acc1", "harness.tasks.zeroshot:evaluate",
    "zero-shot classification from prompt templates; top-1/5 accuracy, macro-F1, balanced accuracy"),
    aliases=("zero-shot", "classification", "zs"))
TASKS.register("caption_selection", TaskMeta(
    "caption_selection", TaskKind.CAPTION_SELECTION, "acc", "harness.tasks.caption_selection:evaluate",
    "true caption vs foils (SugarCrepe, ARO, VALSE; ties wrong), Winoground text/image/group scores; "
    "acc = macro mean of the subsets"), aliases=("captions", "compositionality"))

__all__ = ["TASKS", "TaskMeta", "TaskResult"]
