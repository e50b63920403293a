"""What a result was measured on: versions, git sha, device. Recorded with every run."""

from __future__ import annotations

import platform
import subprocess
import threading
from functools import lru_cache

from harness import __version__
from harness.core.project_files import CHECKOUT_DIR, build_info, installed_from_wheel

_GIT_LOCK = threading.Lock()


def git_sha() -> str | None:
    """The checkout's commit (``-dirty`` with uncommitted changes); for a wheel install, the
    commit it was built from. Only a checkout is asked: site-packages may sit inside some other
    repository (a venv in a clone), whose HEAD says nothing about the installed code."""
    with _GIT_LOCK:  # one git call per process, whether the prefetch thread or the caller asks first
        return _git_sha()


@lru_cache(maxsize=1)
def _git_sha() -> str | None:
    if installed_from_wheel():
        return build_info().get("git_sha")
    root = CHECKOUT_DIR
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out + ("-dirty" if dirty else "") if out else None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    """The CPU model (e.g. 'AMD EPYC 9454P 48-Core Processor'), so CPU throughput baselines
    compare like with like; platform.processor() is often just 'x86_64'."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def open_clip_version() -> str | None:
    """open_clip's version without importing it when the run did not (importing it costs
    1-4 s of start-up for a model that never uses it): the loaded module's, else the
    installed distribution's metadata."""
    import sys
    from importlib import metadata

    module = sys.modules.get("open_clip")
    if module is not None:
        return getattr(module, "__version__", None)
    try:
        return metadata.version("open_clip_torch")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return None


def prefetch_git_sha() -> None:
    """Ask git for the sha on a background thread (two subprocesses; waiting on them releases
    the GIL) so the record's environment finds it ready instead of waiting at the end."""
    import threading

    threading.Thread(target=git_sha, name="vlbench-git-sha", daemon=True).start()


def environment(device: str) -> dict:
    import torch

    return {
        "harness_version": __version__,
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "open_clip": open_clip_version(),
        "device": str(device),
        "device_name": device_name(device),
        "host": platform.node(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
    }
