"""Sweeps on Ray: each RunSpec one Ray task, records through the store's atomic writes.

``vlbench sweep --executor ray`` starts a local Ray instance (no ``--ray-address``) or joins an
existing cluster. Runs already in the store are skipped before anything is dispatched; a
task that fails or whose worker dies is retried by Ray (``max_retries``, application errors
included) and then reported by name; the sweep exits non-zero if any run failed. A record is
written (atomically) only at the end of a run, so a worker killed mid-run loses nothing that
had finished. Every node must see the same results store and cache paths (a shared
filesystem) and have vlbench installed; the driver's ``VLBENCH_*`` variables travel with
each task.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import UserError

FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "TRANSFORMERS_OFFLINE")  # plus every VLBENCH_*


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None   # None: a local instance
    gpus_per_run: float = 0
    cpus_per_run: float = 1
    max_retries: int = 1
    num_cpus: int | None = None  # size of a local instance (None: Ray's default, all cores)

    def __post_init__(self) -> None:
        """Refused here, before Ray starts, naming the flag (Ray's own refusal names neither
        the flag nor comes before its start-up)."""
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise UserError(f"--max-retries must be 0 or more (attempts after a failed run), got {self.max_retries}")
        for flag, value in (("--gpus-per-run", self.gpus_per_run), ("--cpus-per-run", self.cpus_per_run)):
            if not value >= 0:  # NaN too
                raise UserError(f"{flag} must be 0 or more, got {value}")


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray, which is not installed: pip install 'vlbench[ray]'") from None
    return ray


def connect(opts: RayOptions):
    """The ``ray`` module, initialised: an instance already running in this process is used
    as it is; returns (ray, whether this call started it)."""
    ray = _ray()
    if opts.address:
        _probe(opts.address)
    if ray.is_initialized():
        return ray, False
    kwargs = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    try:
        if opts.address:
            ray.init(address=opts.address, **kwargs)
        else:
            ray.init(num_cpus=opts.num_cpus, **kwargs)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, gRPC errors alike
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        where = f"--ray-address {opts.address}" if opts.address else "a local Ray instance"
        raise UserError(f"{where}: cannot connect ({first})") from None
    return ray, True


PROBE_TIMEOUT_S = 5.0


def _probe(address: str) -> None:
    """Fail in seconds on an address nothing listens at (Ray itself retries for minutes).
    ``auto`` and ``local`` are Ray's own words, resolved by it."""
    import socket

    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=PROBE_TIMEOUT_S):
            return
    except ValueError:
        raise UserError(f"--ray-address {address}: expected HOST:PORT or ray://HOST:PORT") from None
    except OSError as exc:
        raise UserError(f"--ray-address {address}: no Ray cluster reachable there within "
                        f"{PROBE_TIMEOUT_S:g}s ({exc.strerror or exc}); start one with `ray start --head` "
                        "or leave out --ray-address for a local instance") from None


def _task_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("VLBENCH_") or k in FORWARDED_ENV}


def _run_task(spec, results: str, force: bool, env: dict[str, str]) -> dict:
    """One run inside a Ray worker (a reused process: the driver's variables are set for the
    run and the worker's own restored afterwards)."""
    saved = {k: os.environ.get(k) for k in {*env, *(k for k in os.environ if k.startswith("VLBENCH_"))}}
    os.environ.update(env)
    for k in saved:
        if k not in env:
            os.environ.pop(k, None)
    try:
        from harness.run.runner import run_one

        outcome = run_one(spec, Path(results), force=force)
        return {"status": outcome.status.value, "path": str(outcome.path), "report": outcome.summary()}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _name(spec) -> str:
    rerank = f" rerank_k={spec.options.rerank_k}" if spec.options.rerank_k is not None else ""
    return f"{spec.model} on {spec.dataset}/{spec.split or 'default'} ({spec.task}{rerank})"


def _why(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)  # RayTaskError carries the run's own exception
    err = cause if isinstance(cause, BaseException) else exc
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip()] or [type(err).__name__]
    return f"{type(err).__name__}: {lines[0][:300]}"


def _progress(done: int, running: int, failed: int, skipped: int, total: int) -> str:
    return f"sweep: {done} done, {running} running, {failed} failed, {skipped} skipped, {total} total"


def ray_sweep(specs, results: Path, force: bool, opts: RayOptions) -> int:
    """Dispatch ``specs`` not yet in the store as Ray tasks; 0 when all succeed, else 1."""
    from harness.run.runner import existing_record

    ray, started = connect(opts)
    try:
        todo, skipped = [], 0
        for spec in specs:
            path = None if force else existing_record(spec, results)
            if path is not None:
                skipped += 1
                print(f"{_name(spec)}: skipped, already in the store {path}", flush=True)
            else:
                todo.append(spec)
        task = ray.remote(_run_task).options(num_cpus=opts.cpus_per_run, num_gpus=opts.gpus_per_run,
                                             max_retries=opts.max_retries, retry_exceptions=True)
        env = _task_env()
        pending = {task.remote(spec, str(results), force, env): spec for spec in todo}
        done, failures = 0, []
        print(_progress(done, len(pending), 0, skipped, len(specs)), flush=True)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(ready[0])
            try:
                print(ray.get(ready[0])["report"], flush=True)
                done += 1
            except Exception as exc:  # noqa: BLE001 - a run's failure is reported, the sweep goes on
                failures.append(spec)
                print(f"vlbench: error: {_name(spec)} failed after {opts.max_retries + 1} attempt(s): {_why(exc)}",
                      file=sys.stderr, flush=True)
            print(_progress(done, len(pending), len(failures), skipped, len(specs)), flush=True)
        if failures:
            print(f"vlbench: {len(failures)} of {len(specs)} runs failed: {'; '.join(map(_name, failures))}",
                  file=sys.stderr)
        return 1 if failures else 0
    finally:
        if started:
            ray.shutdown()
