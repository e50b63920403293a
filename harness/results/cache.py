"""Embedding cache: named per-item tensors, stored in chunks, keyed by all that changes them.

An entry is one folder ``<root>/embeddings/<digest of key>/``::

    manifest.json              key, n_items, chunk_items, and per finished chunk:
                               file, start, end, sha256, {tensor: {shape, dtype}}
    chunk-000000.safetensors   items [0, chunk_items), chunk-000001 the next, ...

Chunk files are written to a temporary name and renamed before the manifest (also renamed
into place) lists them, so a crash leaves finished chunks listed and nothing half-written
trusted: an interrupted encode resumes from its last finished chunk. A listed chunk is used
only when its bytes hash to the manifest's sha256 and its tensors have the manifest's names,
shapes and dtypes (first dimension = its item range); anything else is recomputed, with one
warning per entry. Values are generic named tensors (embeddings, token-level features), so
any encoder that works item by item can sit behind :func:`load_or_compute`.

    >>> import tempfile, torch
    >>> root = tempfile.mkdtemp()
    >>> calls = []
    >>> def compute(start, end):
    ...     calls.append((start, end))
    ...     return {"emb": torch.arange(start, end, dtype=torch.float32)[:, None]}
    >>> out, info = load_or_compute(root, {"model": "m"}, 5, compute, chunk_items=2)
    >>> calls, out["emb"].flatten().tolist(), info.computed_items
    ([(0, 2), (2, 4), (4, 5)], [0.0, 1.0, 2.0, 3.0, 4.0], 5)
    >>> out, info = load_or_compute(root, {"model": "m"}, 5, compute, chunk_items=2)
    >>> len(calls), info.cached_items
    (3, 5)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.results.store import write_bytes_atomic

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
DEFAULT_CHUNK_ITEMS = 2048


class CacheError(RuntimeError):
    """A cache entry cannot be used as asked (inconsistent tensors from the compute function)."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where embeddings live: ``<cache_dir>/embeddings`` (RunOptions.cache_dir), else
    ``$VLBENCH_EMBEDDINGS`` (embeddings on another disk than generated data), else
    ``$VLBENCH_CACHE/embeddings``, else ``~/.cache/vlbench/embeddings``."""
    if not cache_dir and os.environ.get("VLBENCH_EMBEDDINGS"):
        return Path(os.environ["VLBENCH_EMBEDDINGS"]).expanduser()
    base = cache_dir or os.environ.get("VLBENCH_CACHE") or "~/.cache/vlbench"
    return Path(base).expanduser() / "embeddings"


def key_digest(key: Mapping[str, Any]) -> str:
    """Stable hex id of a JSON-serialisable key (sorted keys, so dict order does not matter)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]


def identity_of(obj: Any) -> str:
    """A process-independent description of a transform/tokeniser: its repr without the
    memory addresses (``<function f at 0x7f..>``) that change on every run."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def texts_digest(texts) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:32]


@dataclass
class CacheInfo:
    """What one :func:`load_or_compute` call did; recorded in the stage timing."""

    cached_items: int = 0      # items read back from the cache
    computed_items: int = 0    # items the compute function produced in this call
    recomputed_chunks: int = 0  # listed chunks that failed their checks and were redone
    enabled: bool = True       # False: memory only (--no-cache, or the cache is not writable)

    @property
    def hit(self) -> bool:
        return self.enabled and self.computed_items == 0 and self.cached_items > 0


def _chunk_name(index: int) -> str:
    return f"chunk-{index:06d}.safetensors"


@contextlib.contextmanager
def file_lock(folder: Path, name: str = ".lock"):
    """Serialise a read-modify-write of files in ``folder`` between processes (an exclusive
    ``flock`` on ``folder/name``): manifests of one entry, digest tables."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: last writer wins, chunks stay valid
        yield
        return
    with open(folder / name, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _describe(tensors: Mapping[str, Any]) -> dict[str, dict]:
    return {name: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
            for name, t in sorted(tensors.items())}


class CacheEntry:
    """The chunks of one key. ``missing()`` are the item ranges still to compute; ``put``
    stores one (on disk when the entry has a folder); ``load`` concatenates them all."""

    def __init__(self, folder: Path | None, key: Mapping[str, Any], n_items: int, chunk_items: int):
        if n_items < 0 or chunk_items <= 0:
            raise ValueError(f"cache entry needs n_items >= 0 and chunk_items > 0, got {n_items}, {chunk_items}")
        self.folder, self.key, self.n_items = folder, dict(key), n_items
        self.chunk_items = chunk_items
        self._chunks: dict[int, dict] = {}  # index -> tensors, valid ones only
        self.info = CacheInfo(enabled=folder is not None)
        if folder is not None:
            self._open_disk()

    # ---- reading what is there
    def _open_disk(self) -> None:
        manifest = self._read_manifest()
        if manifest is None:
            return
        self.chunk_items = int(manifest["chunk_items"])  # the layout belongs to the entry
        problems: list[str] = []
        for index, meta in sorted(((int(i), m) for i, m in manifest["chunks"].items())):
            tensors, why = self._read_chunk(index, meta)
            if tensors is None:
                problems.append(f"{meta.get('file', index)}: {why}")
            else:
                self._chunks[index] = tensors
        self.info.cached_items = self.cached_items()
        if problems:
            self.info.recomputed_chunks = len(problems)
            warnings.warn(f"embedding cache {self.folder}: {len(problems)} chunk(s) failed their checks and "
                          f"will be recomputed (first: {problems[0]})", stacklevel=3)

    def _read_manifest(self) -> dict | None:
        path = self.folder / MANIFEST
        if not path.exists():
            return None
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            ok = (manifest.get("version") == FORMAT_VERSION and manifest.get("key") == json.loads(
                json.dumps(self.key, sort_keys=True, default=str)) and manifest.get("n_items") == self.n_items
                and int(manifest.get("chunk_items", 0)) > 0 and isinstance(manifest.get("chunks"), dict))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            warnings.warn(f"embedding cache {path}: unreadable manifest ({exc}); recomputing", stacklevel=4)
            return None
        if not ok:
            warnings.warn(f"embedding cache {path}: manifest does not match this key/size; recomputing",
                          stacklevel=4)
            return None
        return manifest

    def _read_chunk(self, index: int, meta: dict) -> tuple[dict | None, str]:
        from safetensors.torch import load as st_load

        start, end = self.range_of(index)
        if meta.get("start") != start or meta.get("end") != end or meta.get("file") != _chunk_name(index):
            return None, "item range or file name differs from the layout"
        try:
            blob = (self.folder / meta["file"]).read_bytes()
        except OSError as exc:
            return None, f"unreadable ({exc.strerror or exc})"
        if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
            return None, "sha256 mismatch (truncated or modified)"
        try:
            tensors = st_load(blob)
        except Exception as exc:  # noqa: BLE001 - any parse failure means "do not trust"
            return None, f"not a safetensors file ({exc})"
        if _describe(tensors) != meta.get("tensors"):
            return None, "tensor names, shapes or dtypes differ from the manifest"
        if any(t.shape[0] != end - start for t in tensors.values()):
            return None, f"first dimension is not {end - start} items"
        return tensors, ""

    # ---- layout
    def range_of(self, index: int) -> tuple[int, int]:
        start = index * self.chunk_items
        return start, min(start + self.chunk_items, self.n_items)

    @property
    def n_chunks(self) -> int:
        return -(-self.n_items // self.chunk_items)

    def missing(self) -> list[tuple[int, int]]:
        return [self.range_of(i) for i in range(self.n_chunks) if i not in self._chunks]

    def cached_items(self) -> int:
        return sum(e - s for s, e in (self.range_of(i) for i in self._chunks))

    # ---- writing
    def put(self, start: int, end: int, tensors: Mapping[str, Any]) -> None:
        index, rem = divmod(start, self.chunk_items)
        if rem or (start, end) != self.range_of(index):
            raise CacheError(f"chunk [{start}, {end}) does not match the entry's layout of {self.chunk_items} items")
        bad = [n for n, t in tensors.items() if t.shape[0] != end - start]
        if not tensors or bad:
            raise CacheError(f"compute({start}, {end}) returned {sorted(tensors)}: every tensor needs "
                             f"{end - start} rows (bad: {bad})")
        self.info.computed_items += end - start
        if self.folder is None:  # memory only: leave the tensors where they are (the GPU, say)
            self._chunks[index] = {name: t.detach() for name, t in tensors.items()}
            return
        cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
        self._chunks[index] = cpu
        self._store(index, cpu)

    def _store(self, index: int, tensors: dict) -> None:
        from safetensors.torch import save as st_save

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            blob = st_save(tensors)
            write_bytes_atomic(self.folder / _chunk_name(index), blob)
            start, end = self.range_of(index)
            meta = {"file": _chunk_name(index), "start": start, "end": end,
                    "sha256": hashlib.sha256(blob).hexdigest(), "tensors": _describe(tensors)}
            with file_lock(self.folder):
                manifest = self._current_manifest()
                manifest["chunks"][str(index)] = meta
                write_bytes_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
        except OSError as exc:  # a full or read-only disk costs speed later, never the result
            warnings.warn(f"embedding cache {self.folder} is not writable ({exc}); continuing without it",
                          stacklevel=4)
            self.folder = None
            self.info.enabled = False

    def _current_manifest(self) -> dict:
        fresh = {"version": FORMAT_VERSION, "key": self.key, "n_items": self.n_items,
                 "chunk_items": self.chunk_items, "chunks": {}}
        path = self.folder / MANIFEST
        try:
            on_disk = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return fresh
        same = (isinstance(on_disk, dict) and on_disk.get("version") == FORMAT_VERSION
                and on_disk.get("n_items") == self.n_items and on_disk.get("chunk_items") == self.chunk_items
                and isinstance(on_disk.get("chunks"), dict))
        if not same:
            return fresh
        # chunks another process finished meanwhile stay listed; a bad one is overwritten by put
        return {**fresh, "chunks": dict(on_disk["chunks"])}

    def chunks(self) -> dict[int, dict]:
        """The valid chunks held now: index -> tensors."""
        return dict(self._chunks)

    def adopt(self, index: int, tensors: Mapping[str, Any]) -> None:
        """Hold a chunk another process computed and stored (a rank of a sharded run):
        kept in memory only, and counted neither as computed nor as read from the cache."""
        if index not in self._chunks:
            start, end = self.range_of(index)
            if any(t.shape[0] != end - start for t in tensors.values()):
                raise CacheError(f"chunk {index} from another rank does not hold {end - start} items")
            held = next(iter(self._chunks.values()), None)  # memory-only chunks may sit on a GPU
            device = next(iter(held.values())).device if held else None
            self._chunks[index] = {n: t.to(device) if device is not None else t for n, t in tensors.items()}

    def load(self) -> dict:
        """All chunks concatenated along dim 0 (on the CPU when read from or written to disk);
        every chunk must be present."""
        import torch

        if self.missing():
            raise CacheError(f"cache entry has {len(self.missing())} chunk(s) still to compute")
        if self.n_items == 0:
            return {}
        parts = [self._chunks[i] for i in range(self.n_chunks)]
        names = sorted(parts[0])
        if any(sorted(p) != names for p in parts):
            raise CacheError("chunks hold different tensor names; the compute function is not consistent")
        if len(parts) == 1:
            return dict(parts[0])
        return {n: torch.cat([p[n] for p in parts]) for n in names}


def open_entry(root: str | os.PathLike | None, key: Mapping[str, Any], n_items: int,
               chunk_items: int = DEFAULT_CHUNK_ITEMS) -> CacheEntry:
    """The entry of ``key`` under ``root`` (``None``: memory only, nothing read or written)."""
    folder = None if root is None else Path(root) / key_digest(key)
    return CacheEntry(folder, key, n_items, chunk_items)


def load_or_compute(root: str | os.PathLike | None, key: Mapping[str, Any], n_items: int,
                    compute: Callable[[int, int], Mapping[str, Any]],
                    chunk_items: int = DEFAULT_CHUNK_ITEMS) -> tuple[dict, CacheInfo]:
    """Named tensors for items ``[0, n_items)``: finished chunks from the cache, the others
    from ``compute(start, end)`` (stored as each finishes). Returns (tensors, what happened)."""
    entry = open_entry(root, key, n_items, chunk_items)
    for start, end in entry.missing():
        entry.put(start, end, compute(start, end))
    return entry.load(), entry.info


def module_digest(module) -> str:
    """sha256 of a torch module's state (names, dtypes, shapes, bytes): the identity of
    weights that have no checkpoint file to hash (random init, weights built in memory)."""
    import torch

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:32]
