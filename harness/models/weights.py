"""Finding weights: local paths, hub caches, and a fast, clear failure when offline."""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.core.interfaces import WeightsUnavailableError
from harness.core.network import HF_HOST, host_reachable  # noqa: F401 - the loaders ask it here

# one file-identity cache for checkpoints and images alike
from harness.results.identity import file_digest  # noqa: F401
from harness.results.identity import hash_file as sha256_file  # noqa: F401
from harness.results.identity import prefetch as prefetch_digest  # noqa: F401

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"  # checkpoints that ship with vlbench


def cached_hub_file(repo_id: str, filename: str) -> str | None:
    """Path of ``repo_id/filename`` in the local Hugging Face cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename)
    return found if isinstance(found, str) else None


def local_weights(path: str, what: str) -> Path:
    """``--weights PATH`` must exist; say so plainly when it does not."""
    p = Path(path).expanduser()
    if not p.exists():
        raise WeightsUnavailableError(f"{what}: weights path {str(p)!r} does not exist; check the --weights path")
    return p


CHECKPOINT_HINT = "check that --weights points at this model's checkpoint and that the file is complete"


def checkpoint_error(what: str, path: str | Path, exc: BaseException | str) -> WeightsUnavailableError:
    """One line for a checkpoint that cannot be parsed: the file, the parser's first line
    (torch's UnpicklingError runs to a dozen), and what to check."""
    text = exc if isinstance(exc, str) else (str(exc).strip() or type(exc).__name__)
    first = text.splitlines()[0].strip()
    kind = "" if isinstance(exc, str) else f"{type(exc).__name__}: "
    return WeightsUnavailableError(f"{what}: {path} is not a readable checkpoint ({kind}{first}); {CHECKPOINT_HINT}")


_ZIP, _PICKLE_PROTOCOLS = b"PK\x03\x04", tuple(bytes([0x80, v]) for v in range(2, 6))
_NUMPY = b"\x93NUMPY"


def checkpoint_format(path: str | Path, what: str) -> str:
    """``"safetensors"``, ``"zip"`` (torch.save's format, also .npz), ``"pickle"`` (legacy
    torch.save) or ``"npy"`` from a file's first bytes and, for safetensors, its header;
    anything else (random bytes, a text file, a truncated header) is an error naming it."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise checkpoint_error(what, path, exc) from None
    if head.startswith(_ZIP):
        return "zip"
    if head[:2] in _PICKLE_PROTOCOLS:
        return "pickle"
    if head.startswith(_NUMPY):
        return "npy"
    try:
        safetensors_header(path)
    except (OSError, ValueError, KeyError) as exc:
        detail = str(exc).removeprefix(f"{path}: ").removeprefix("not a safetensors file ")
        raise checkpoint_error(what, path, f"neither safetensors nor a PyTorch/NumPy file {detail}") from None
    return "safetensors"


def load_safetensors(path: str | Path, what: str) -> dict:
    """``safetensors.torch.load_file`` with a malformed file as one line naming it."""
    from safetensors.torch import load_file

    fmt = checkpoint_format(path, what)
    if fmt != "safetensors":
        raise checkpoint_error(what, path, f"a {fmt} file (torch.save / NumPy); {what} reads .safetensors")
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - SafetensorError and friends: all mean "not this file"
        raise checkpoint_error(what, path, exc) from None


def load_torch_state(path: str | Path, what: str) -> dict:
    """``torch.load(weights_only=True)`` (no code runs from the file) with any parse or
    refusal as one line naming the file."""
    import torch

    checkpoint_format(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, EOFError, RuntimeError (bad zip), ...
        raise checkpoint_error(what, path, exc) from None


def offline_error(what: str, missing: str) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"{what}: weights not available offline ({missing} is not in the local cache and "
        f"{HF_HOST} cannot be reached); pass --weights PATH to a local checkpoint or directory, "
        "or populate the Hugging Face cache (HF_HOME) on a machine with network"
    )


def content_digest(path: str | Path) -> str | None:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted);
    None when nothing is there (the loader then says what is missing).

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "a.bin").write_bytes(b"x")
    >>> content_digest(d / "a.bin") == hashlib.sha256(b"x").hexdigest(), content_digest(d / "no")
    (True, None)
    """
    p = Path(path).expanduser()
    if p.is_file():
        return file_digest(p)
    if not p.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(f"{f.relative_to(p).as_posix()}\0{file_digest(f)}\n".encode())
    return h.hexdigest()


MAX_HEADER = 100_000_000  # the format's own limit on the JSON header (safetensors spec)


def safetensors_header(path: str | Path) -> dict:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON), read
    without the tensor data: ``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": ...}``."""
    import json
    import struct

    with open(path, "rb") as f:
        raw = f.read(8)
        n = struct.unpack("<Q", raw)[0] if len(raw) == 8 else -1
        if not 0 < n <= MAX_HEADER:
            raise ValueError(f"{path}: not a safetensors file (header length {n})")
        blob = f.read(n)
    try:
        header = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a safetensors file (header is not JSON: {exc})") from None
    if not isinstance(header, dict) or len(blob) != n:
        raise ValueError(f"{path}: not a safetensors file (truncated or malformed header)")
    return header


def safetensors_numel(header: dict) -> int:
    """Elements over every tensor a safetensors header lists (parameters and stored buffers).

    >>> safetensors_numel({"a": {"shape": [3, 4]}, "b": {"shape": []}, "__metadata__": {}})
    13
    """
    import math

    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())
