"""The process ending of ``vlbench`` (harness.core.process_exit, harness.cli.main.entry): no
interpreter teardown, but everything a normal exit does that a user can observe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

PROGRAM = """
import atexit, threading, time, sys
from harness.core.process_exit import fast_exit
atexit.register(lambda: print("atexit ran", flush=True))
def late():
    time.sleep(0.2)
    print("thread done", flush=True)
threading.Thread(target=late).start()
sys.stdout.write("buffered|")  # not flushed by the program itself
sys.stderr.write("err buffered")
fast_exit(3)
"""


def test_fast_exit_joins_threads_runs_atexit_and_flushes():
    p = subprocess.run([sys.executable, "-c", PROGRAM], env=ENV, capture_output=True, text=True, timeout=60)
    assert p.returncode == 3
    assert p.stdout == "buffered|thread done\natexit ran\n"  # the order of a normal exit
    assert p.stderr == "err buffered"


def _closed_pipe_run(args: list[str]) -> subprocess.CompletedProcess:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before we write a byte, as with `| head` at scale
    try:
        return subprocess.run([sys.executable, "-m", "harness", *args], env=ENV, stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)


def test_a_closed_pipe_is_not_an_error():
    p = _closed_pipe_run(["list", "datasets"])
    assert (p.returncode, p.stderr) == (141, "")  # 128 + SIGPIPE, like `yes | head`, and no traceback


def test_module_entry_returns_the_commands_code():
    p = subprocess.run([sys.executable, "-m", "harness", "list", "nothing-like-this"], env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "nothing-like-this" in p.stderr
    p = subprocess.run([sys.executable, "-m", "harness", "list", "suites"], env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "default" in p.stdout
