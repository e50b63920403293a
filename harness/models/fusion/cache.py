"""On-disk cache of frozen-tower features for ``vlbench fit``: key -> dict of tensors.

Deliberately one narrow function, so a general embedding cache can replace it: features
of a (dataset split, towers) pair are computed once, written atomically as safetensors
under ``$VLBENCH_CACHE/fusion-features/``, and read back on every later fit.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

FOLDER = "fusion-features"


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    base = root or os.environ.get("VLBENCH_CACHE") or "~/.cache/vlbench"
    return Path(base).expanduser() / FOLDER


def cached_tensors(key: str, compute: Callable[[], dict], root: str | os.PathLike | None = None) -> dict:
    """``compute()`` once per ``key`` (letters, digits, ``.-_`` only); later calls load the file.

    >>> import tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> cached_tensors("k", lambda: {"x": torch.ones(2)}, d)["x"].tolist()
    [1.0, 1.0]
    >>> cached_tensors("k", lambda: 1 / 0, d)["x"].tolist()   # not recomputed
    [1.0, 1.0]
    """
    from safetensors.torch import load_file, save_file

    if not re.fullmatch(r"[A-Za-z0-9._-]+", key):
        raise ValueError(f"feature cache key {key!r}: use letters, digits, '.', '-', '_'")
    path = cache_dir(root) / f"{key}.safetensors"
    if path.is_file():
        return load_file(str(path))
    tensors = {k: v.contiguous() for k, v in compute().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp))
        os.replace(tmp, path)  # readers never see a half-written file
    finally:
        tmp.unlink(missing_ok=True)
    return tensors
