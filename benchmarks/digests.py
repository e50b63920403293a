"""Cost of identifying images by content (harness.results.identity): cold (nothing remembered, every
file read and hashed) and warm (a stat per file, digests from the table), on the Flickr8k dev
split and on N small generated files.

    python benchmarks/digests.py --flickr8k /work/shared/data/flickr8k --small 100000

The small files are written to a temporary folder (``--tmp``, default the system's) and
removed afterwards. "Cold" here means no digest table; the OS page cache may still hold the
files (dropping it needs root), so a cold run on a cold disk reads more slowly than this.
Every file counts as older than the 2 s racy window (as on any later run), so its digest is kept.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from harness.results import identity as digests


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def measure(paths: list[Path], repeats: int) -> dict:
    """Interleaved: each round hashes cold (fresh table folder, in-process tables dropped), then
    warm in the same process, then warm as a new process would (table read back from disk)."""
    cold, warm, reread, bare = [], [], [], []
    for _ in range(repeats):
        bare += _timed(lambda: [os.stat(p) for p in paths], 1)  # the floor: one stat per file
        cache = Path(tempfile.mkdtemp(prefix="vlbench-digests-"))
        try:
            digests._TABLES.clear()
            cold += _timed(lambda: digests.file_digests(paths, cache), 1)  # noqa: B023
            warm += _timed(lambda: digests.file_digests(paths, cache), 1)  # noqa: B023
            digests._TABLES.clear()
            reread += _timed(lambda: digests.file_digests(paths, cache), 1)  # noqa: B023
            table_mb = sum(p.stat().st_size for p in (cache / "digests").glob("*.json")) / 1e6
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    size_mb = sum(p.stat().st_size for p in paths) / 1e6
    med = statistics.median
    return {"files": len(paths), "mb": size_mb, "cold": med(cold), "warm": med(warm), "reread": med(reread),
            "bare": med(bare), "table_mb": table_mb, "cold_mb_s": size_mb / med(cold)}


def report(name: str, r: dict) -> None:
    print(f"{name}: {r['files']} files, {r['mb']:.1f} MB | cold {r['cold']:.3f} s ({r['cold_mb_s']:.0f} MB/s, "
          f"{1e6 * r['cold'] / r['files']:.0f} us/file) | warm, same process {r['warm']:.3f} s "
          f"({1e6 * r['warm'] / r['files']:.1f} us/file) | warm, new process {r['reread']:.3f} s "
          f"(table {r['table_mb']:.1f} MB) | cold/warm {r['cold'] / r['reread']:.1f}x | bare stat loop "
          f"{r['bare']:.3f} s, warm/bare {r['warm'] / r['bare']:.2f}x")


def flickr8k_dev(root: Path) -> list[Path]:
    names = (root / "text" / "Flickr_8k.devImages.txt").read_text(encoding="utf-8").split()
    return [root / "Flicker8k_Dataset" / n for n in names]


def small_files(folder: Path, n: int, size: int) -> list[Path]:
    folder.mkdir(parents=True)
    paths = [folder / f"{i:07d}.png" for i in range(n)]
    for p in paths:
        p.write_bytes(os.urandom(size))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flickr8k", type=Path, help="a Flickr8k copy in the official layout (dev split used)")
    ap.add_argument("--small", type=int, default=100_000, help="how many small files to generate (0: none)")
    ap.add_argument("--small-bytes", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tmp", type=Path, default=None)
    args = ap.parse_args()
    # ctime cannot be backdated: count every file as old enough to remember (as a later run sees it)
    digests.RACY_NS = -1
    if args.flickr8k:
        report("flickr8k dev", measure(flickr8k_dev(args.flickr8k), args.repeats))
    if args.small:
        tmp = Path(tempfile.mkdtemp(prefix="vlbench-small-", dir=args.tmp))
        try:
            paths = small_files(tmp / "images", args.small, args.small_bytes)
            report(f"{args.small} small files of {args.small_bytes} B", measure(paths, args.repeats))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
