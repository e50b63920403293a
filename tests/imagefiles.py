"""Tiny image files for loader tests (valid, and every kind of bad)."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=16)
def jpeg_bytes(colour: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_jpeg(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes(colour))
    return path


def truncated_jpeg(path: Path) -> Path:
    """A JPEG cut short: the header parses, the end-of-image marker is gone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = jpeg_bytes((10, 200, 10), 64)
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupt_middle_jpeg(path: Path) -> Path:
    """Intact start (SOI + APP0 marker) and end marker, zeros in between: only a full decode notices."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(jpeg_bytes((10, 10, 200), 64))
    data[4:len(data) - 2] = b"\x00" * (len(data) - 6)
    path.write_bytes(bytes(data))
    return path
