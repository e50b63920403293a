"""Fault injection for tests of failure handling: ``VLBENCH_FAULT=POINT[@RANK]`` kills this
process (SIGKILL, as the OOM killer or a lost node would) when it reaches POINT
(``encode``: after its first stored cache chunk; ``run``: before a record is written),
on every rank or only on RANK. With ``VLBENCH_FAULT_ONCE=PATH`` it fires only while PATH
does not exist (and creates it first), so a retried run then succeeds."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def maybe(point: str, rank: int = 0) -> None:
    spec = os.environ.get("VLBENCH_FAULT")
    if not spec:
        return
    where, _, who = spec.partition("@")
    if where != point or (who and int(who) != rank):
        return
    once = os.environ.get("VLBENCH_FAULT_ONCE")
    if once:
        try:
            Path(once).touch(exist_ok=False)
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)
