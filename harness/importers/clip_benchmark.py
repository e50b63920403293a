"""CLIP_benchmark result JSONs -> vlbench records, marked as imported.

CLIP_benchmark (LAION-AI/CLIP_benchmark, ``clip_benchmark eval ... --output FILE``) writes one
JSON object per evaluation::

    {"dataset": "flickr30k", "model": "ViT-B-32", "pretrained": "openai",
     "task": "zeroshot_retrieval", "language": "en",
     "metrics": {"image_retrieval_recall@5": 0.835, "text_retrieval_recall@5": 0.941}}

Metric mapping (its values are fractions, ours percent, so x100):

==================================  ==============  ==========================================
CLIP_benchmark                      vlbench         why
==================================  ==============  ==========================================
``image_retrieval_recall@k``        ``t2i_R@k``     a caption is the query, images are ranked
``text_retrieval_recall@k``         ``i2t_R@k``     an image is the query; hit if ANY caption is
                                                    in the top k (both: CLIP's hit rate, as ours)
``acc1`` / ``acc5``                 ``acc1/acc5``   top-k accuracy (acc5 is NaN/None below 5
                                                    classes: left out)
``mean_per_class_recall``           ``balanced_acc``  sklearn's balanced_accuracy_score
==================================  ==============  ==========================================

``rsum`` is added when all six of R@1/5/10 both ways are there (CLIP_benchmark's default
``--recall_k`` is 5 alone). Not carried over: ranks (medr/meanr), macro-F1, timings, memory.
One difference remains: CLIP_benchmark takes ``torch.topk``'s order on tied scores, vlbench
counts ties against the model, so on tied scores its recall can be higher.

The dump does not say which split or model type was evaluated: ``split`` (default ``test``,
CLIP_benchmark's default) and ``model_type`` (default ``open_clip``) say it, and are recorded.
Dataset names map to vlbench's where the data are the same (``mscoco_captions`` -> ``coco``,
Karpathy splits; ``imagenet1k`` test -> ``val``; ``flickr8k`` val -> ``dev``; a ``wds/`` prefix
is dropped); other names are kept as they are. A ``language`` other than ``en`` (translated
captions or class names) is other data: ``flickr30k`` in ``zh`` becomes ``flickr30k-zh``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.results.records import ResultRecord

TOOL = "CLIP_benchmark"
IMPORT_VERSION = 1  # bump when the mapping changes: it is part of every imported run key

TASKS = {"zeroshot_retrieval": "retrieval", "zeroshot_classification": "zeroshot"}
# CLIP_benchmark dataset name -> (vlbench dataset, {its split: our split})
DATASETS: dict[str, tuple[str, dict[str, str]]] = {
    "mscoco_captions": ("coco", {}),              # coco_{split}_karpathy.json: Karpathy splits
    "flickr30k": ("flickr30k", {}),               # flickr30k_{split}_karpathy.txt
    "flickr8k": ("flickr8k", {"val": "dev"}),     # Karpathy's Flickr8k splits are the official ones
    "cifar10": ("cifar10", {}),
    "cifar100": ("cifar100", {}),
    "imagenet1k": ("imagenet1k", {"test": "val"}),  # torchvision ImageNet split="val"
}
_RECALL = re.compile(r"^(image|text)_retrieval_recall@(\d+)$")
_PLAIN = {"acc1": "acc1", "acc5": "acc5", "mean_per_class_recall": "balanced_acc"}
_REQUIRED = ("dataset", "model", "pretrained", "task", "metrics")


@dataclass(frozen=True)
class ImportOptions:
    split: str = "test"            # the --split given to clip_benchmark eval (not in its JSON)
    model_type: str = "open_clip"  # its --model_type (not in its JSON)


def map_metrics(raw: dict[str, Any], where: str) -> dict[str, float]:
    """CLIP_benchmark metric names and fractions -> vlbench keys and percent.

    >>> map_metrics({"image_retrieval_recall@5": 0.5, "text_retrieval_recall@5": 0.75}, "f.json")
    {'t2i_R@5': 50.0, 'i2t_R@5': 75.0}
    >>> map_metrics({"acc1": 0.25, "acc5": float("nan"), "mean_per_class_recall": 0.2}, "f.json")
    {'acc1': 25.0, 'balanced_acc': 20.0}
    """
    out: dict[str, float] = {}
    for key, value in raw.items():
        recall = _RECALL.match(key)
        ours = (f"{'t2i' if recall.group(1) == 'image' else 'i2t'}_R@{recall.group(2)}" if recall
                else _PLAIN.get(key))
        if ours is None:
            known = ", ".join([*_PLAIN, "image_retrieval_recall@K", "text_retrieval_recall@K"])
            raise UserError(f"{where}: metrics.{key}: no vlbench equivalent (importable: {known})")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue  # acc5 below 5 classes
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise UserError(f"{where}: metrics.{key} = {value!r}: CLIP_benchmark writes fractions in [0, 1]")
        out[ours] = round(100.0 * float(value), 10)
    six = [f"{d}_R@{k}" for d in ("t2i", "i2t") for k in (1, 5, 10)]
    if all(k in out for k in six):
        out["rsum"] = round(sum(out[k] for k in six), 10)
    return out


def _check_dataset_name(name: str, where: Path) -> None:
    """CLIP_benchmark names are plain (``flickr30k``) or slash-joined (``wds/vtab/cifar10``);
    a name with an empty, ``.`` or ``..`` part, or a NUL byte, is refused before it reaches
    the store, where it would name a folder.

    >>> _check_dataset_name("wds/vtab/cifar10", Path("f.json"))
    >>> _check_dataset_name("..", Path("f.json"))
    Traceback (most recent call last):
    ...
    harness.core.errors.UserError: f.json: dataset '..' is not a dataset name (a path part '..'); CLIP_benchmark names look like 'flickr30k' or 'wds/vtab/cifar10'
    """
    bad = next((p for p in name.split("/") if p in ("", ".", "..")), None) if "\x00" not in name else "\\x00"
    if bad is not None:
        raise UserError(f"{where}: dataset {name!r} is not a dataset name (a path part {bad!r}); "
                        "CLIP_benchmark names look like 'flickr30k' or 'wds/vtab/cifar10'")


def _dataset(name: str, split: str) -> tuple[str, str]:
    bare = name[len("wds/"):] if name.startswith("wds/") else name
    ours, splits = DATASETS.get(bare, (bare, {}))
    return ours, splits.get(split, split)


def _model(model: str, pretrained: str, model_type: str) -> dict[str, Any]:
    tag = Path(pretrained).name if ("/" in pretrained or pretrained.endswith((".pt", ".bin"))) else pretrained
    name = f"{model}/{tag}" if tag else model
    info = {"name": name, "family": model_type, "kind": "dual", "checkpoint": pretrained or None,
            "checkpoint_sha256": None, "params": None,
            "source": f"{model_type}:{model}/{pretrained}" if pretrained else f"{model_type}:{model}"}
    if model_type == "open_clip":
        from harness.models import MODELS  # the registered open_clip names are ARCH/TAG too

        if name in MODELS:
            meta = MODELS.get(name)
            info.update(name=meta.name, family=meta.family, params=meta.params, source=meta.source)
    return info


def parse(path: Path, options: ImportOptions = ImportOptions()) -> ResultRecord:
    """One CLIP_benchmark JSON -> one record; a UserError naming the file and key otherwise."""
    try:
        data = path.read_bytes()
        raw = json.loads(data)
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a CLIP_benchmark result JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a CLIP_benchmark result is a JSON object, not {type(raw).__name__}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise UserError(f"{path}: missing key(s) {', '.join(missing)} of a CLIP_benchmark result")
    for key in ("dataset", "model", "task"):
        if not isinstance(raw[key], str) or not raw[key]:
            raise UserError(f"{path}: {key} must be a non-empty string, got {raw[key]!r}")
    if not isinstance(raw["pretrained"], str) or not isinstance(raw["metrics"], dict):
        raise UserError(f"{path}: pretrained must be a string and metrics an object")
    _check_dataset_name(raw["dataset"], path)
    task = TASKS.get(raw["task"])
    if task is None:
        raise UserError(f"{path}: task {raw['task']!r} cannot be imported (importable: {', '.join(TASKS)})")
    metrics = map_metrics(raw["metrics"], str(path))
    if not metrics:
        raise UserError(f"{path}: metrics: nothing to import")
    from harness.tasks import TASKS as OUR_TASKS

    dataset, split = _dataset(raw["dataset"], options.split)
    language = raw.get("language")
    if language is not None and (not isinstance(language, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", language)):
        raise UserError(f"{path}: language must be a language code such as 'en' or 'zh', got {language!r}")
    if language not in (None, "en"):  # other captions or class names: other data, another table
        dataset = f"{dataset}-{language}"
    digest = hashlib.sha256(data).hexdigest()
    key_src = json.dumps([TOOL, IMPORT_VERSION, digest, options.split, options.model_type]).encode()
    written = dt.datetime.fromtimestamp(path.stat().st_mtime, tz=dt.timezone.utc).replace(microsecond=0)
    return ResultRecord(
        model=_model(raw["model"], raw["pretrained"], options.model_type),
        dataset={"name": dataset, "split": split, "fingerprint": None, "images": None,
                 "info": {"clip_benchmark": {"dataset": raw["dataset"], "split": options.split}}},
        task=task,
        options={"device": None, "precision": None, "language": language, "model_type": options.model_type},
        metrics=metrics, main_metric=OUR_TASKS.get(task).main_metric,
        timings={}, memory={},  # nothing was timed here: no throughput, no memory
        environment={"imported_from": TOOL, "source_file": str(path.resolve()), "source_sha256": digest,
                     "import_version": IMPORT_VERSION},
        created_at=written.isoformat(),  # when CLIP_benchmark wrote the file
        runtime_s=0.0, run_key=hashlib.sha256(key_src).hexdigest()[:16])


def import_files(paths: list[Path], results: Path, options: ImportOptions = ImportOptions()) -> list[Path]:
    """Parse every file first, then write: one bad file writes nothing."""
    from harness.results import store

    records = [parse(p, options) for p in paths]
    return [store.save(results, r) for r in records]
