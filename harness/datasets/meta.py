"""The registered description of a dataset: its load runs the loader, then the manifest checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import ClassificationData, DatasetError, DatasetRequest, RetrievalData, TaskKind
from .checks import check_against_manifest


@dataclass(frozen=True)
class DatasetMeta:
    """Cheap, registered description of a dataset; ``loader`` reads or generates it."""

    name: str
    tasks: tuple[TaskKind, ...]
    splits: tuple[str, ...]
    default_split: str
    loader: Callable[[DatasetRequest], RetrievalData | ClassificationData]
    description: str = ""
    license: str = "unknown"
    citation: str = ""
    source: str = ""
    offline: bool = False  # available on a fresh machine with no network
    aliases: tuple[str, ...] = ()
    spec: Any = None       # the manifest entry (harness.datasets.manifest.DatasetSpec) it came from
    probe: Callable[[str | None], str | None] | None = None  # cheap: None if usable here, else why not

    def load(self, request: DatasetRequest) -> RetrievalData | ClassificationData:
        if request.split not in self.splits:
            raise DatasetError(
                f"dataset {self.name!r} has no split {request.split!r}; splits: {', '.join(self.splits)}"
            )
        if request.task not in self.tasks:
            raise DatasetError(
                f"dataset {self.name!r} has no {request.task.value} view; it offers: "
                + ", ".join(t.value for t in self.tasks)
            )
        data = self.loader(request)
        if request.strict:
            data.info["strict"] = True
        if self.spec is not None:
            check_against_manifest(self.spec, data, request)
        return data

    def availability(self, data_root: str | None) -> str | None:
        """None when the dataset can be loaded here (files found, cheaply), else the reason."""
        return None if self.probe is None else self.probe(data_root)
