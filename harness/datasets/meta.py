"""The registered description of a dataset: its load runs the loader, then the manifest checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import DatasetError, DatasetRequest, TaskKind, loader_view, with_implied
from .checks import check_against_manifest
from .views import ImageTextProbeData, ProbeData

PROBE_TRAIN_SPLIT = "train"  # a linear probe is fitted here (its L2 strength chosen on part of it)
# derived views made of a train split and the evaluation split: (the base view, the pair's class)
_TRAIN_EVAL_VIEWS = {TaskKind.LINEAR_PROBE: (TaskKind.ZEROSHOT, ProbeData),
                     TaskKind.IMAGE_TEXT_PROBE: (TaskKind.IMAGE_TEXT_CLASSIFICATION, ImageTextProbeData)}


@dataclass(frozen=True)
class DatasetMeta:
    """Cheap, registered description of a dataset; ``loader`` reads or generates it."""

    name: str
    tasks: tuple[TaskKind, ...]
    splits: tuple[str, ...]
    default_split: str
    loader: Callable[[DatasetRequest], Any]  # RetrievalData | ClassificationData | JudgmentData
    description: str = ""
    license: str = "unknown"
    citation: str = ""
    source: str = ""
    offline: bool = False  # available on a fresh machine with no network
    aliases: tuple[str, ...] = ()
    spec: Any = None       # the manifest entry (harness.datasets.manifest.DatasetSpec) it came from
    probe: Callable[[str | None], str | None] | None = None  # cheap: None if usable here, else why not

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", with_implied(tuple(self.tasks)))  # e.g. the image + text probe

    def load(self, request: DatasetRequest) -> Any:
        if request.split not in self.splits:
            raise DatasetError(
                f"dataset {self.name!r} has no split {request.split!r}; splits: {', '.join(self.splits)}"
            )
        if request.task not in self.tasks:
            raise DatasetError(
                f"dataset {self.name!r} has no {request.task.value} view; it offers: "
                + ", ".join(t.value for t in self.tasks)
            )
        if request.task in _TRAIN_EVAL_VIEWS:
            return self._probe_data(request)
        if loader_view(request.task) is not request.task:  # a view read from another (captioning: retrieval)
            from dataclasses import replace

            return self._load_view(replace(request, task=loader_view(request.task)))
        return self._load_view(request)

    def _load_view(self, request: DatasetRequest) -> Any:
        data = self.loader(request)
        if request.strict:
            data.info["strict"] = True
        if self.spec is not None:
            check_against_manifest(self.spec, data, request)
        return data

    def _probe_data(self, request: DatasetRequest) -> ProbeData | ImageTextProbeData:
        """Both views of a probe (the derived view's base, of train and of the evaluation
        split); ``--limit`` subsets the evaluation split only (the probe is fitted on the
        whole train split, or on ``--shots`` images per class of it)."""
        from dataclasses import replace

        base, make = _TRAIN_EVAL_VIEWS[request.task]
        what = request.task.value.replace("_", " ")
        if request.split == PROBE_TRAIN_SPLIT or PROBE_TRAIN_SPLIT not in self.splits:
            why = (f"it is fitted on {PROBE_TRAIN_SPLIT!r}, never on the split it is evaluated on"
                   if request.split == PROBE_TRAIN_SPLIT else f"{self.name!r} has no {PROBE_TRAIN_SPLIT!r} split")
            raise DatasetError(f"{what} on {self.name}/{request.split}: {why}; "
                               f"splits: {', '.join(self.splits)}")
        view = replace(request, task=base)
        train = self._load_view(replace(view, split=PROBE_TRAIN_SPLIT, limit=None))
        return make(train=train, eval=self._load_view(view))

    def availability(self, data_root: str | None) -> str | None:
        """None when the dataset can be loaded here (files found, cheaply), else the reason."""
        return None if self.probe is None else self.probe(data_root)
