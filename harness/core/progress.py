"""Progress bars for long stages, and the one policy that decides when they show.

Long work (image and text encoding, rerank, ``data describe --decode``, ``fit``, a sweep's
runs) shows a live bar with items, rate and ETA when stderr is a terminal; with no terminal
(CI, output redirected to a file) nothing is added, so logs keep one line per run.
``--progress`` / ``--no-progress`` force either; ``--quiet`` prints each distinct warning
once (same category and text; later ones are counted and summed up in one line at the end).
Under torchrun only rank 0 draws bars: N ranks writing to one terminal would garble it.

Why tqdm, not rich: tqdm is a hard requirement of what vlbench already requires (datasets,
transformers, huggingface_hub, open_clip, sentence-transformers), rich only arrives through
typer; tqdm is what those tools draw, so a vlbench bar looks like theirs; it writes plain
text to any stream (a forced bar in a CI log is one line per stage), and between redraws an
update is a counter increment, a clock read and a compare. rich's live display wants to own
the terminal, for what is one line per stage here. tqdm's import is slower (~0.1-0.3 s: its
version lookup goes through importlib.metadata), so it is imported when a command starts
with bars on, never inside a timed stage, and never with bars off.

The bars never enter a timed region: call sites update a bar after a batch's
``Stage.batch`` block, and a redraw happens at most every ``mininterval`` seconds
(benchmarks/overhead.py ``--progress`` measures the cost; figures in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass(frozen=True)
class ProgressPolicy:
    """``show``: None = bars when stderr is a terminal (the default), True/False = forced by
    ``--progress``/``--no-progress``. ``quiet``: each distinct warning printed once."""

    show: bool | None = None
    quiet: bool = False
    # on a terminal: redraw at most twice a second (a redraw measured 0.1-0.3 ms of CPU on the
    # loaded 2-core dev box, more in waits for a core), and stages under half a second never flash a bar
    tty_mininterval: float = 0.5
    tty_delay: float = 0.5
    # a forced bar into a file/pipe: few redraws, and each finished stage left as one final line
    file_mininterval: float = 5.0

    def enabled(self, stream: TextIO | None = None) -> bool:
        if os.environ.get("RANK", "0") not in ("", "0"):
            return False
        if self.show is not None:
            return self.show
        return is_terminal(stream if stream is not None else sys.stderr)


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


_policy = ProgressPolicy()


def policy() -> ProgressPolicy:
    return _policy


def showing() -> bool:
    """Whether bars are drawn now (callers drop their own periodic progress lines then)."""
    return _policy.enabled()


class NullBar:
    """What :func:`bar` returns when no bar is shown: every call does nothing."""

    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, desc: str, refresh: bool = True) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NullBar:
        return self

    def __exit__(self, *exc) -> None:
        pass


NULL = NullBar()


def _tqdm_kwargs(desc: str, unit: str, leave: bool | None) -> dict:
    stream = sys.stderr
    tty = is_terminal(stream)
    # a stage's bar vanishes from a terminal when done (the run's line says it all); in a log it stays
    leave = (not tty) if leave is None else leave
    return {
        "desc": desc, "unit": unit, "file": stream, "dynamic_ncols": tty,
        # look at the clock on every update (one per batch or item): a slow batch after fast ones still redraws
        "miniters": 1,
        "mininterval": _policy.tty_mininterval if tty else _policy.file_mininterval,
        # a bar that stays (a sweep's count of runs) shows at once; a passing stage's only once it lasts
        "delay": _policy.tty_delay if tty and not leave else 0.0,
        "leave": leave,
    }


def bar(desc: str, total: int | None, unit: str = "it", initial: int = 0, leave: bool | None = None):
    """A tqdm bar on stderr (use as a context manager), or :data:`NULL` when bars are off
    or there is nothing to count."""
    if not _policy.enabled() or not total:
        return NULL
    return _tqdm()(total=total, initial=initial, **_tqdm_kwargs(desc, unit, leave))


def track(items: Iterable, desc: str, total: int | None = None, unit: str = "it",
          leave: bool | None = None) -> Iterable:
    """``items`` with a bar that counts one per item finished; ``items`` itself when bars are off."""
    if total is None:
        total = len(items) if hasattr(items, "__len__") else None
    if not _policy.enabled() or not total:
        return items
    return _tqdm()(items, total=total, **_tqdm_kwargs(desc, unit, leave))


@functools.cache
def _tqdm():
    from tqdm import tqdm

    class Bar(tqdm):
        # No monitor thread: tqdm starts one with the first bar and joins it when the last
        # closes, which on a loaded machine cost ~3 ms a bar (benchmarks/overhead.py --progress).
        # Its job, redrawing a bar whose dynamic miniters grew too large, is moot with miniters=1.
        monitor_interval = 0

    return Bar


def _bars_live() -> bool:
    if _tqdm.cache_info().currsize == 0:  # no bar was ever made: tqdm need not even be imported
        return False
    return bool(getattr(_tqdm(), "_instances", None))


def echo(line: str, file: TextIO | None = None) -> None:
    """Print one line; with bars on screen they are cleared and redrawn below it."""
    out = file if file is not None else sys.stdout
    if _bars_live():
        _tqdm().write(line, file=out)  # clears our bars, writes, redraws them
        out.flush()
    else:
        print(line, file=out, flush=True)


@dataclass
class WarningPrinter:
    """``warnings.showwarning`` while a command runs: prints through :func:`echo` (so a
    warning does not tear a bar) and, when ``quiet``, drops the repeats of a warning with
    the same category and text, counting them."""

    quiet: bool = False
    counts: Counter = field(default_factory=Counter)

    def __call__(self, message, category, filename, lineno, file=None, line=None) -> None:
        key = (category, str(message))
        self.counts[key] += 1
        if self.quiet and self.counts[key] > 1:
            return
        text = warnings.formatwarning(message, category, filename, lineno, line)
        with contextlib.suppress(OSError):  # as Python's own: a closed stderr loses the warning
            echo(text.rstrip("\n"), file if file is not None else sys.stderr)

    def summary(self) -> list[str]:
        """One line per warning whose repeats were dropped."""
        if not self.quiet:
            return []
        out = []
        for (_category, text), n in self.counts.items():
            if n > 1:
                first = text.splitlines()[0] if text else ""
                short = first if len(first) <= 100 else first[:97] + "..."
                out.append(f"vlbench: --quiet: {n - 1} more of this warning not shown: {short}")
        return out


@contextlib.contextmanager
def session(new: ProgressPolicy) -> Iterator[WarningPrinter]:
    """Apply ``new`` for one command: bars per its policy, warnings through a
    :class:`WarningPrinter`; on the way out, the ``--quiet`` summary and the old state."""
    global _policy
    old_policy, old_show = _policy, warnings.showwarning
    printer = WarningPrinter(quiet=new.quiet)
    _policy, warnings.showwarning = new, printer
    if new.enabled():
        _tqdm()  # the import (~0.1 s) now, not inside the first timed stage
    try:
        yield printer
    finally:
        _policy, warnings.showwarning = old_policy, old_show
        for line in printer.summary():
            with contextlib.suppress(OSError):
                print(line, file=sys.stderr, flush=True)


def from_args(args) -> ProgressPolicy:
    return ProgressPolicy(show=getattr(args, "progress", None), quiet=bool(getattr(args, "quiet", False)))


def add_arguments(parser) -> None:
    """``--progress/--no-progress`` and ``--quiet`` for a subcommand that does long work."""
    import argparse

    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="force progress bars on stderr on or off (default: on when stderr is a terminal)")
    parser.add_argument("--quiet", action="store_true",
                        help="print each distinct warning once; repeats are counted in one line at the end")
