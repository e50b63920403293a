"""SIGTERM from a launcher, reported as vlbench's one line.

When one rank dies, torchrun (like srun and most launchers) sends SIGTERM to the surviving
ranks of that node at once, often before any of them has reached a collective and seen the
peer gone; a survivor then dies silently and the only report is the launcher's. Under a
launcher vlbench therefore turns SIGTERM into its failure: the handler raises the error
:func:`install` is given (the CLI prints it as one line, exit 2, nothing written), and a
watcher thread prints the same line and exits when the main thread is stuck in C code (a
collective waiting on the dead peer) and cannot run the handler before the launcher's
SIGKILL (torchrun waits 30 s).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable

GRACE_S = 5.0  # the main thread's time to report before the watcher does it for it
EXIT_CODE = 2  # a user-facing failure, as the CLI's one-line errors

_state: dict = {"installed": False, "raised": False, "fds": None}


def install(failure: Callable[[], BaseException]) -> bool:
    """Make SIGTERM raise ``failure()`` in the main thread (once), with the watcher as a
    fallback. False (nothing changed) off the main thread, where handlers cannot be set."""
    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        return False
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def handler(signum, frame):
        if not _state["raised"]:
            _state["raised"] = True
            raise failure()

    signal.signal(signal.SIGTERM, handler)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_fd, failure), name="vlbench-sigterm", daemon=True).start()
    _state.update(installed=True, raised=False, fds=(read_fd, write_fd))
    return True


def uninstall() -> None:
    """SIGTERM back to its default (the run is over); the watcher ends with its pipe."""
    if not _state["installed"] or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    os.close(_state["fds"][1])  # the watcher's read returns end-of-file; it closes its end and ends
    _state.update(installed=False, fds=None)


def _watch(read_fd: int, failure: Callable[[], BaseException]) -> None:
    while True:
        try:
            got = os.read(read_fd, 64)
        except OSError:
            return
        if not got:  # uninstall() closed the write end: the watcher's job is over
            os.close(read_fd)
            return
        if signal.SIGTERM not in got:
            continue
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and not _state["raised"]:
            time.sleep(0.05)
        if _state["raised"]:  # the main thread has it: it reports and exits
            continue
        sys.stderr.write(f"vlbench: error: {failure()}\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
