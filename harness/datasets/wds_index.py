"""Listings of webdataset shards (each sample's key, image member, offset, size, sha256 and
target), kept in ``$VLBENCH_CACHE/wds-index/`` by the shard file's identity.

Listing a shard reads it whole (every image is hashed); a 50k-image split is gigabytes. The
listing is kept with the ``(size, mtime_ns, ctime_ns, inode)`` of the file it was read from,
checked on every use, as :mod:`harness.results.identity` does for image files (and for the same
reasons: ctime cannot be set back; a file changed in the last 2 s is not trusted). Under
torchrun, rank 0 loads first (:func:`harness.parallel.shard_plan.rank0_first`) and the other ranks read
its listings instead of the shards. An unreadable listing is read again from the shard: it
can cost time, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

VERSION = 1
FOLDER = "wds-index"
RACY_NS = 2_000_000_000


def _index_path(path: Path, kind: str, cache_dir: str | None) -> Path:
    base = Path(cache_dir or os.environ.get("VLBENCH_CACHE") or "~/.cache/vlbench").expanduser()
    name = hashlib.sha256(f"{path.resolve()}\0{kind}".encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return base / FOLDER / f"{name}.json"


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _read(index: Path, path: Path, kind: str, ident: list[int]) -> dict[str, Any] | None:
    try:
        raw = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(raw, dict) and raw.get("version") == VERSION and raw.get("shard") == str(path.resolve())
          and raw.get("kind") == kind and raw.get("identity") == ident and isinstance(raw.get("rows"), list))
    return raw if ok else None


def shard_listing(path: Path, label: str, kind: str, cache_dir: str | None,
                  scan: Callable[[Path, str, str], dict[str, Any]]) -> dict[str, Any]:
    """The listing of ``path`` from the cache when the file is unchanged, else ``scan`` it."""
    from harness.results.store import write_bytes_atomic

    ident = _identity(path.stat())
    index = _index_path(path, kind, cache_dir)
    cached = _read(index, path, kind, ident)
    if cached is not None:
        return cached
    listing = scan(path, label, kind)
    now = time.time_ns()
    if now - ident[1] > RACY_NS and now - ident[2] > RACY_NS:
        payload = {"version": VERSION, "shard": str(path.resolve()), "kind": kind, "identity": ident, **listing}
        try:
            index.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(index, json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
        except OSError:  # a read-only or full cache disk costs a re-read next time, nothing else
            pass
    return listing
