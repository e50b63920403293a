"""CIFAR-10 / CIFAR-100 (Krizhevsky 2009) from the official "python version" pickles.

Layouts (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` unpacked)::

    <root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    <root>/cifar-100-python/{train, test, meta}

Each batch is a pickled dict (bytes keys): ``data`` a (N, 3072) uint8 array (1024 red, then
green, then blue values, row-major 32x32), ``labels`` (CIFAR-10) or ``fine_labels``
(CIFAR-100). Class names come from the copy's own meta file (``label_names`` /
``fine_label_names``, underscores read as spaces, as the CLIP paper's prompts use them).

The pickles are read with an unpickler that only builds plain containers and numpy arrays,
so a tampered file cannot run code. A missing or malformed batch fails the load naming the
file; there is nothing to skip at item level (the images are arrays, not files).
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

from .base import (
    LOCAL_COPY_HINT,
    ClassificationData,
    DatasetError,
    DatasetRequest,
    Format,
    TaskKind,
    apply_limit,
    find_in_roots,
    fingerprint,
)
from .images import ArrayImages
from .resources import templates

LAYOUTS = {
    10: {"dir": "cifar-10-batches-py", "meta": "batches.meta", "names": b"label_names", "labels": b"labels",
         "splits": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}},
    100: {"dir": "cifar-100-python", "meta": "meta", "names": b"fine_label_names", "labels": b"fine_labels",
          "splits": {"train": ["train"], "test": ["test"]}},
}
HINT = LOCAL_COPY_HINT
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict:
    try:
        obj = _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except FileNotFoundError:
        raise DatasetError(f"{path} not found") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DatasetError(f"{path}: not a CIFAR python pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: not a CIFAR python pickle (a {type(obj).__name__}, not a dict)")
    return obj


def _variant(spec) -> int:
    v = spec.options.get("variant", 10)
    if v not in LAYOUTS:
        raise DatasetError(f"{spec.origin}: {spec.name}: options.variant must be 10 or 100, got {v!r}")
    return v


def find_dir(spec, data_root: str | None) -> Path:
    return find_in_roots(spec, data_root, [LAYOUTS[_variant(spec)]["dir"]], True, spec.name)[1]


def _batch(path: Path, labels_key: bytes, n_classes: int):
    import numpy as np

    obj = read_pickle(path)
    data, labels = obj.get(b"data"), obj.get(labels_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{path}: 'data' must be an (N, 3072) uint8 array")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(data):
        raise DatasetError(f"{path}: {labels_key.decode()} must list one label per image ({len(data)})")
    labels = [int(y) for y in labels]
    if any(not 0 <= y < n_classes for y in labels):
        raise DatasetError(f"{path}: a label is outside 0..{n_classes - 1}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load(spec, request: DatasetRequest) -> ClassificationData:
    import numpy as np

    if request.task is not TaskKind.ZEROSHOT:
        raise DatasetError(f"{spec.name} has only a zeroshot (classification) view")
    layout = LAYOUTS[_variant(spec)]
    split = spec.splits[request.split].source_split or request.split
    if split not in layout["splits"]:
        raise DatasetError(f"{spec.name}: no split {split!r} in {layout['dir']}; splits: {', '.join(layout['splits'])}")
    folder = find_dir(spec, request.data_root)
    meta = read_pickle(folder / layout["meta"])
    raw_names = meta.get(layout["names"])
    if not isinstance(raw_names, list) or not raw_names:
        raise DatasetError(f"{folder / layout['meta']}: no {layout['names'].decode()} list")
    names = [(n.decode() if isinstance(n, bytes) else str(n)).replace("_", " ") for n in raw_names]
    pixels, labels, keys, shas = [], [], [], {}
    for fname in layout["splits"][split]:
        path = folder / fname
        arr, ys = _batch(path, layout["labels"], len(names))
        pixels.append(arr)
        labels += ys
        keys += [f"{fname}#{i}" for i in range(len(ys))]
        shas[fname] = hashlib.sha256(path.read_bytes()).hexdigest()
    data = ClassificationData(
        name=spec.name, split=request.split, images=ArrayImages(np.ascontiguousarray(np.concatenate(pixels)), keys),
        labels=labels, classnames=names, templates=templates(spec.classes["templates"]),
        fingerprint=fingerprint(spec.name, request.split, shas, names, spec.classes["templates"]),
        info={"root": str(folder), "sha256": shas})
    return apply_limit(data, request.limit, request.seed)


def probe(spec, data_root: str | None) -> str | None:
    try:
        folder = find_dir(spec, data_root)
    except DatasetError as exc:
        return exc.reason
    layout = LAYOUTS[_variant(spec)]
    missing = [f for f in [layout["meta"], *layout["splits"]["test"]] if not (folder / f).is_file()]
    return f"missing {', '.join(missing)} in {folder}" if missing else None


FORMAT = Format(name="cifar", tasks=(TaskKind.ZEROSHOT,), load=load, probe=probe, options={"variant": int},
                needs_classes=True)
