"""Checks on the values a loader reads from a data file: each names the place it was read from
(``where``: file, line or entry, and field) and says what was expected.

Every loader that joins a path read from a data file to a folder passes it through
:func:`relative_path` first: an absolute path or one that climbs out with ``..`` is refused,
so a hostile or broken annotation file cannot make vlbench open files outside the data root.
The check is lexical (no symlink resolution), so a data root whose image folder is a link
to another disk keeps working.
"""

from __future__ import annotations

import math
import posixpath
from typing import Any

from .errors import DatasetError


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def relative_path(value: Any, where: str) -> str:
    """``value`` when it is a relative path that stays inside the folder it is joined to.

    >>> relative_path("val2017/000000000139.jpg", "f.json: entry '1': filename")
    'val2017/000000000139.jpg'
    >>> relative_path("../../etc/passwd", "f.json: entry '1': filename")
    Traceback (most recent call last):
    ...
    harness.datasets.errors.DatasetError: f.json: entry '1': filename '../../etc/passwd' leaves the data folder; give a path relative to it
    """
    path = text(value, where)
    normal = posixpath.normpath(path.replace("\\", "/"))
    if path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":") or normal == ".." \
            or normal.startswith("../"):
        raise DatasetError(f"{where} {_shown(path)} leaves the data folder; give a path relative to it")
    return path


def text(value: Any, where: str) -> str:
    """A non-empty string without NUL bytes (a NUL means a binary or corrupt file).

    >>> text("a red square", "f.json: entry '1': caption")
    'a red square'
    >>> text(["a", "b"], "f.json: entry '1': caption")
    Traceback (most recent call last):
    ...
    harness.datasets.errors.DatasetError: f.json: entry '1': caption: expected a string, got list ['a', 'b']
    """
    if not isinstance(value, str):
        raise DatasetError(f"{where}: expected a string, got {_kind(value)} {_shown(value)}")
    if not value:
        raise DatasetError(f"{where}: empty")
    if "\x00" in value:
        raise DatasetError(f"{where}: holds a NUL byte ({_shown(value)}); the file is corrupt or not text")
    return value


def number(value: Any, where: str, minimum: float | None = None, positive: bool = False) -> float:
    """A finite JSON number (not a boolean), at least ``minimum``, above 0 when ``positive``.

    >>> number(3, "f.json: entry 0: bbox_w", positive=True)
    3.0
    >>> number(0, "f.json: entry 0: bbox_w", positive=True)
    Traceback (most recent call last):
    ...
    harness.datasets.errors.DatasetError: f.json: entry 0: bbox_w: expected a number above 0, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetError(f"{where}: expected a number, got {_kind(value)} {_shown(value)}")
    if positive and value <= 0:
        raise DatasetError(f"{where}: expected a number above 0, got {_shown(value)}")
    if minimum is not None and value < minimum:
        raise DatasetError(f"{where}: expected a number >= {minimum:g}, got {_shown(value)}")
    return float(value)


def texts(value: Any, where: str, at_least: int = 1, exactly: int | None = None) -> list[str]:
    """A list of strings (each checked by :func:`text`), of ``exactly`` or ``at_least`` items.

    >>> texts(["a cat", "cat a"], "f.json: entry 3: caption_options", at_least=2)
    ['a cat', 'cat a']
    """
    if not isinstance(value, list):
        raise DatasetError(f"{where}: expected a list of strings, got {_kind(value)} {_shown(value)}")
    if exactly is not None and len(value) != exactly:
        raise DatasetError(f"{where}: expected {exactly} strings, got {len(value)}")
    if len(value) < at_least:
        raise DatasetError(f"{where}: expected at least {at_least} strings, got {len(value)}")
    return [text(v, f"{where}[{k}]") for k, v in enumerate(value)]
