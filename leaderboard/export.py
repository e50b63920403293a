"""The leaderboard's DataFrame (:func:`leaderboard.load`) as a file for pandas, duckdb, polars
or a spreadsheet: CSV, Parquet or JSON Lines, written atomically.

Parquet keeps every column's type (strings, nullable integers, UTC times); CSV and JSON Lines
write times as ISO 8601 and missing values as empty / ``null``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pandas as pd

from harness.core.errors import UserError

FORMATS = ("csv", "parquet", "jsonl")


class ExportError(UserError, ValueError):
    pass


def to_bytes(df: pd.DataFrame, fmt: str) -> bytes:
    """``df`` in ``fmt``; the index (a row number) is left out."""
    if fmt == "csv":
        return df.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S%z").encode("utf-8")
    if fmt == "jsonl":
        text = df.to_json(orient="records", lines=True, date_format="iso", date_unit="s", force_ascii=False)
        return (text if text.endswith("\n") or not text else text + "\n").encode("utf-8")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401 - pandas' parquet engine
        except ImportError:
            raise ExportError("--format parquet needs pyarrow (pip install pyarrow)") from None
        buf = io.BytesIO()
        df.to_parquet(buf, index=False, engine="pyarrow")
        return buf.getvalue()
    raise ExportError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def export(results: str | Path, fmt: str, out: str | Path | None = None,
           history: bool = False, force: bool = False) -> tuple[Path | None, int]:
    """Write the frame of ``results`` to ``out`` (atomically; an existing file only with
    ``force``), or to stdout when ``out`` is None (not for parquet, which is binary). Returns
    the path written and the number of rows."""
    from harness.results.store import write_bytes_atomic
    from leaderboard.frame import load

    if out is None and fmt == "parquet":
        raise ExportError("--format parquet is binary: give --out FILE")
    if out is not None and not force and (Path(out).exists() or Path(out).is_symlink()):
        raise ExportError(f"--out {out} exists; pass --force to replace it, or give another path")
    df = load(results, history=history)
    data = to_bytes(df, fmt)
    if out is None:
        _to_stdout(data)
        return None, len(df)
    return write_bytes_atomic(Path(out), data), len(df)


def _to_stdout(data: bytes) -> None:
    """Write to standard output; a failure (a full disk behind a redirect) names it, where the
    OSError itself carries no path. A closed pipe stays BrokenPipeError (the CLI's quiet exit)."""
    from harness.results.store import StorageError

    try:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise StorageError(exc.errno or 0, f"cannot write the export to standard output ({exc.strerror or exc}); "
                                           "give --out FILE on a disk with room") from None
