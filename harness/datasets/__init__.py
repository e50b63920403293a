"""Dataset registry. Loader modules are light (PIL/json inside functions)."""

from harness.datasets import flickr8k, karpathy, synthetic
from harness.datasets.base import (ClassificationData, DatasetError, DatasetMeta, DatasetRequest,
                                   RetrievalData, TaskKind)
from harness.registry import Registry

DATASETS: Registry[DatasetMeta] = Registry("dataset")
for _meta in (synthetic.META, flickr8k.META, karpathy.COCO_META, karpathy.FLICKR30K_META):
    DATASETS.register(_meta.name, _meta, aliases=_meta.aliases)

__all__ = ["DATASETS", "ClassificationData", "DatasetError", "DatasetMeta", "DatasetRequest",
           "RetrievalData", "TaskKind"]
