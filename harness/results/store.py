"""Results store: one JSON file per run, written atomically, found again by run key."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from pathlib import Path

from harness.core.errors import UserError
from harness.results.records import RecordError, ResultRecord

DEFAULT_RESULTS = "results"


def results_dir(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("VLBENCH_RESULTS") or DEFAULT_RESULTS)


def _safe(part: str) -> str:
    """One path part naming a folder or file inside the store: no separators, and no leading
    dots (``.`` and ``..`` would climb, and dot-names are hidden from :func:`iter_record_files`).

    >>> [_safe(p) for p in ("flickr30k", "coco/../..", "..", ".hidden", "ViT-B-32/openai")]
    ['flickr30k', 'coco-..-..', 'x', 'hidden', 'ViT-B-32-openai']
    """
    return re.sub(r"^[.-]+", "", re.sub(r"[^A-Za-z0-9._-]+", "-", str(part))).strip("-") or "x"


def inside(root: Path, path: Path) -> Path:
    """``path`` when it lies inside ``root`` (compared lexically, after ``..`` is folded), else a
    StorageError: nothing vlbench writes to its store may land outside it."""
    base, target = os.path.normpath(os.path.abspath(root)), os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([base, target]) != base or target == base:
        raise StorageError(errno.EINVAL, f"refusing to write {path}: it is outside the results folder {root}")
    return path


def record_path(root: Path, model: str, dataset: str, split: str, task: str, run_key: str) -> Path:
    """``<root>/<dataset>/<task>/<model>__<split>__<key>.json``: readable, and unique by key."""
    return inside(root, root / _safe(dataset) / _safe(task) / f"{_safe(model)}__{_safe(split)}__{_safe(run_key[:12])}.json")


class StorageError(UserError, OSError):
    """A file vlbench must write cannot be written (read-only or full filesystem, a path
    that is not a regular file): one line naming the path. Still an OSError, so callers
    that can carry on without the file (the embedding cache) keep doing so."""

    def __str__(self) -> str:  # the message alone, not OSError's "[Errno 28] ..."
        return self.strerror or super().__str__()


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (/proc), else by
    the usual set-and-restore."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _hint(exc: OSError) -> str:
    return {errno.ENOSPC: "free some space there or choose another folder",
            errno.EDQUOT: "free some space there (disk quota) or choose another folder",
            errno.EROFS: "the filesystem is read-only; choose another folder",
            errno.EACCES: "no permission to write there; choose another folder"}.get(
        exc.errno, "choose a writable folder")


def storage_error(path: Path | str, exc: OSError, what: str = "cannot write") -> StorageError:
    """``exc`` as a :class:`StorageError` naming ``path`` and what to do about it."""
    reason = exc.strerror or str(exc)
    return StorageError(exc.errno or errno.EIO, f"{what} {path}: {reason}; {_hint(exc)}")


def write_target(path: Path) -> Path:
    """Where writing ``path`` must land: a symlink's target (written through, as ``open()``
    does, so a link into a shared folder stays a link), refused unless it is a regular file
    or does not exist yet (a device node, FIFO or folder would be replaced by a rename)."""
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target
    except OSError as exc:
        raise storage_error(path, exc) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, FIFO or socket)"
        shown = f"{path} (-> {target})" if target != path else str(path)
        raise StorageError(errno.EINVAL, f"cannot write {shown}: it is {kind}; give a file path")
    return target


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write to a temp file in the same folder, fsync, then rename: a reader never sees half
    a file, and a crash leaves the previous version (or nothing) in place. A symlink is
    written through (the rename happens beside its target); the file gets the mode a plain
    ``open()`` would give (0666 less the umask; mkstemp alone makes it 0600). A full or
    read-only filesystem is a :class:`StorageError` naming the path."""
    target = write_target(Path(path))
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except StorageError:
        raise
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise storage_error(target, exc) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return Path(path)


def check_writable(root: Path | str, what: str = "results folder") -> Path:
    """Fail now, in one line naming ``root``, when records could not be written there later:
    create the folder, then write, fsync and remove a small probe file (a read-only or full
    filesystem fails at one of these), before any model loads or any compute starts."""
    root = Path(root)
    probe = root / f".vlbench-write-probe-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            os.write(fd, b"vlbench write probe\n" * 205)  # 4 KiB: a full disk has no block for it
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise storage_error(root, exc, f"{what} not writable:") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return root


def write_json_atomic(path: Path, payload: dict, allow_nan: bool = True) -> Path:
    """``payload`` as indented JSON, written atomically (:func:`write_bytes_atomic`)."""
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=allow_nan) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


def read_record(path: Path) -> ResultRecord:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(f"{path}: unreadable record ({exc})") from None
    return ResultRecord.from_dict(raw, origin=str(path))


def save(root: Path, record: ResultRecord, per_query: dict | None = None) -> Path:
    """Write the record, and beside it (``.queries.json``) the per-query outcomes that
    bootstrap intervals are computed from without re-running the model."""
    path = record_path(root, record.model["name"], record.dataset["name"], record.dataset["split"],
                       record.task, record.run_key)
    payload = record.to_dict()
    refuse_non_finite(path, payload)
    refuse_non_finite(queries_path(path), per_query or {})
    fresh = not path.exists()
    if per_query:
        sidecar = sidecar_text({"run_key": record.run_key, **per_query})
        write_bytes_atomic(queries_path(path), sidecar.encode("utf-8"))
    try:
        return write_json_atomic(path, payload, allow_nan=False)
    except BaseException:
        if per_query and fresh:  # no record for it: do not leave its sidecar behind
            queries_path(path).unlink(missing_ok=True)
        raise


def refuse_non_finite(path: Path, payload: dict) -> None:
    """A record (or sidecar) holding NaN or Infinity is not written: strict JSON readers reject
    it, and an undefined number must be ``null`` with a reason (:mod:`harness.results.finite`)."""
    from harness.results.finite import non_finite_fields

    bad = non_finite_fields(payload)
    if bad:
        raise UserError(f"refusing to write {path}: {', '.join(bad[:5])} {'is' if len(bad) == 1 else 'are'} "
                        "NaN or Infinity; an undefined value is stored as null with its reason")


def sidecar_text(payload: dict) -> str:
    """A JSON object with one key per line and each value compact: per-query lists run to
    thousands of numbers, which indented JSON puts one per line (about twice the bytes).

    >>> print(sidecar_text({"run_key": "k", "pred": [3, 1], "label": [3, 2]}))
    {
    "label":[3,2],
    "pred":[3,1],
    "run_key":"k"
    }
    <BLANKLINE>
    """
    lines = [f"{json.dumps(str(k))}:{json.dumps(v, separators=(',', ':'), allow_nan=False)}"
             for k, v in sorted(payload.items())]
    return "{\n" + ",\n".join(lines) + "\n}\n"


QUERIES_SUFFIX = ".queries.json"


def queries_path(record_path: Path) -> Path:
    """``.../name.json`` -> ``.../name.queries.json``: the per-query sidecar of a record."""
    return record_path.with_name(record_path.stem + QUERIES_SUFFIX)


def iter_record_files(root: Path) -> list[Path]:
    """Every record under ``root``; skips dot-files and dot-folders (in-flight atomic
    writes, caches) and the per-query sidecars."""
    def hidden(path: Path) -> bool:
        return any(part.startswith(".") for part in path.relative_to(root).parts)

    return sorted(p for p in root.rglob("*.json")
                  if p.is_file() and not hidden(p) and not p.name.endswith(QUERIES_SUFFIX))
