"""Content digests of image files, remembered across runs by file identity.

A run's key and its embedding-cache entries name images by what is in them, so an image
rewritten under the same name is re-run, never served from an old result. Hashing a large
split on every run would cost more than the run on a warm cache, so each file's digest is
kept with the identity of the file it was computed from: ``(size, mtime_ns, ctime_ns,
inode)`` of ``os.stat``, checked on every use (git's index does the same). ctime is included
because, unlike mtime, no tool can set it back: ``cp -p`` or ``rsync -t`` preserve mtime
over new bytes, but not ctime. A file modified in the last 2 s is hashed every time and not
remembered (git's "racily clean" rule: timestamps tick coarsely). This is the one file-identity
cache of vlbench: image files and checkpoints (``harness.models.weights``) alike.

The algorithm is sha256: with the SHA extensions of current x86 and ARM cores, OpenSSL's
sha256 ran at 856 MB/s here against 376 MB/s for blake2b (64 MiB buffer, one core), it
needs no extra package, and a digest can be checked with ``sha256sum``.

Digests persist in ``$VLBENCH_CACHE/digests/``, one JSON table per image folder (a split of
100k files is one 10 MB file, read once per process), written atomically under a file lock
and merged with what other processes added meanwhile. An unreadable table is ignored (the
files are hashed again): it can only cost time, never a wrong digest.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "a.jpg").write_bytes(b"x")
    >>> file_digests([d / "a.jpg"], cache_dir=d / "cache") == [hashlib.sha256(b"x").hexdigest()]
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ALGORITHM = "sha256"
TABLE_VERSION = 1
FOLDER = "digests"
RACY_NS = 2_000_000_000  # as harness.models.weights: trust only files older than a timestamp tick

Identity = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode
# in-process copy of the tables read or written: folder of the table file -> {name: [*identity, digest]}
_TABLES: dict[str, dict[str, list]] = {}
# digests hashing on a background thread (:func:`prefetch`): (absolute path, identity) -> Future
_PENDING: dict[tuple[str, Identity], Any] = {}


def digest_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """``<cache_dir>/digests``, else ``$VLBENCH_CACHE/digests``, else ``~/.cache/vlbench/digests``."""
    base = cache_dir or os.environ.get("VLBENCH_CACHE") or "~/.cache/vlbench"
    return Path(base).expanduser() / FOLDER


def hash_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, ALGORITHM).hexdigest()


def _identity(st: os.stat_result) -> Identity:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _table_path(folder: str, cache_dir) -> Path:
    return digest_dir(cache_dir) / f"{hashlib.sha256(folder.encode('utf-8', 'surrogateescape')).hexdigest()[:32]}.json"


def _read_table(path: Path, folder: str) -> dict[str, list]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    ok = (isinstance(raw, dict) and raw.get("version") == TABLE_VERSION and raw.get("algorithm") == ALGORITHM
          and raw.get("folder") == folder and isinstance(raw.get("files"), dict))
    if not ok:
        return {}
    return {k: v for k, v in raw["files"].items() if isinstance(v, list) and len(v) == 5}


def _table(path: Path, folder: str) -> dict[str, list]:
    key = str(path)
    if key not in _TABLES:
        _TABLES[key] = _read_table(path, folder)
    return _TABLES[key]


def _save_table(path: Path, folder: str, added: dict[str, list]) -> None:
    """Merge ``added`` into the table on disk (another process may have added its own)."""
    from harness.results.cache import file_lock
    from harness.results.store import write_bytes_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(path.parent, f".{path.stem}.lock"):
            files = {**_read_table(path, folder), **added}
            payload = {"version": TABLE_VERSION, "algorithm": ALGORITHM, "folder": folder, "files": files}
            write_bytes_atomic(path, json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        _TABLES[str(path)] = files
    except OSError:  # a read-only or full cache disk costs a re-hash next time, nothing else
        pass


def file_digests(paths: Iterable[str | os.PathLike], cache_dir: str | os.PathLike | None = None) -> list[str]:
    """sha256 hex digest of each file, in order; a file whose (size, mtime, ctime, inode) match
    the remembered ones is not read. Raises OSError (naming the file) for an unreadable one."""
    paths = [p if os.path.isabs(p) else os.path.abspath(p) for p in map(os.fspath, paths)]
    by_folder: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        by_folder.setdefault(os.path.dirname(p), []).append(i)
    out: list[str] = [""] * len(paths)
    now = time.time_ns()
    for folder, indices in by_folder.items():
        table_path = _table_path(folder, cache_dir)
        table, added = _table(table_path, folder), {}
        for i in indices:
            name = paths[i][len(folder) + 1:] if folder != "/" else paths[i][1:]
            st = os.stat(paths[i])
            known = table.get(name)
            if (known is not None and known[0] == st.st_size and known[1] == st.st_mtime_ns
                    and known[2] == st.st_ctime_ns and known[3] == st.st_ino):
                out[i] = known[4]
                continue
            ident = _identity(st)
            pending = _PENDING.pop((paths[i], ident), None)
            out[i] = pending.result() if pending is not None else hash_file(paths[i])
            if now - ident[1] > RACY_NS and now - ident[2] > RACY_NS:
                added[name] = [*ident, out[i]]
        if added:
            table.update(added)
            _save_table(table_path, folder, added)
    return out


def file_digest(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """:func:`file_digests` of one file."""
    return file_digests([path], cache_dir)[0]


def prefetch(path: str | os.PathLike) -> None:
    """Start hashing ``path`` on a background thread. hashlib releases the GIL on large
    blocks, so a checkpoint's sha256 (0.1-1 s for 100-200 MB) runs on another core while the
    main thread imports torch; :func:`file_digests` then takes that result for the same file
    identity instead of hashing again. A missing file is left for the caller to report."""
    import threading
    from concurrent.futures import Future

    p = os.path.abspath(os.fspath(path))
    try:
        st = os.stat(p)
    except OSError:
        return
    key = (p, _identity(st))
    if key in _PENDING or not os.path.isfile(p):
        return
    future: Future = Future()
    _PENDING[key] = future

    def work() -> None:
        try:
            future.set_result(hash_file(p))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the thread that asks
            future.set_exception(exc)

    threading.Thread(target=work, name="vlbench-digest", daemon=True).start()
