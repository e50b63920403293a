"""Whether the model hub can be reached: asked once, quickly, so that offline runs fail with one
clear line instead of a client's minute of retries. Below models and datasets, which both ask."""

from __future__ import annotations

import os
import socket
from functools import lru_cache

HF_HOST = "huggingface.co"


@lru_cache(maxsize=8)
def host_reachable(host: str = HF_HOST, port: int = 443, timeout: float = 3.0) -> bool:
    """True when a TCP connection to ``host`` opens; hub clients retry for about a minute
    before failing, so we ask once, quickly, and fail with a clear line instead."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("VLBENCH_OFFLINE") == "1":
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
