"""One run over several processes: torch.distributed set up from the launcher's environment.

``torchrun`` (or ``srun``, or any launcher) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; :func:`from_env` joins that process group (gloo on CPU, NCCL on CUDA with one
device per rank, ``cuda:LOCAL_RANK``). Without WORLD_SIZE > 1 it returns :data:`SINGLE`, and
every helper below is then the identity, so the tasks call them unconditionally.

The work is split by :mod:`harness.parallel.shard_plan`; this module only moves data between ranks.
A collective that fails because a peer died is turned into one line naming the rank
(:class:`RankFailed`): every rank records its host and pid at start-up, and a peer on this
host whose pid is gone (or a zombie) is the one named.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass, field

from harness.core.errors import UserError

TIMEOUT_ENV = "VLBENCH_DIST_TIMEOUT"  # seconds to wait for the rendezvous and for each collective
DEFAULT_TIMEOUT_S = 600.0


class RankFailed(UserError):
    """A peer rank died or failed: the run is abandoned, nothing is written."""


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    peers: list[tuple[str, int]] = field(default_factory=list)  # (host, pid) per rank
    stage: str = "start-up"  # what the run was doing, for the failure line

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend}


SINGLE = DistContext()
_current: DistContext = SINGLE


def current() -> DistContext:
    """The context of this process (set by :func:`from_env`; :data:`SINGLE` otherwise)."""
    return _current


def _int_env(name: str, default: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None:
        if default is None:
            raise UserError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} is set but {name} is not; "
                            "launch with torchrun (or srun/a launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, "
                            "MASTER_ADDR, MASTER_PORT)")
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not an integer") from None


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None


def cuda_device_for(local_rank: int, local_world: int, device_count: int) -> str:
    """``cuda:LOCAL_RANK``; one line when this node has fewer GPUs than ranks.

    >>> cuda_device_for(1, 2, 2)
    'cuda:1'
    """
    if device_count < local_world or local_rank >= device_count:
        raise UserError(f"--device cuda with {local_world} ranks on this node but {device_count} GPU(s): "
                        f"LOCAL_RANK {local_rank} has no device of its own (one GPU per rank; use "
                        f"--nproc_per_node {device_count} or fewer)")
    return f"cuda:{local_rank}"


def requested() -> bool:
    """True when a launcher asked for more than one process."""
    return _int_env("WORLD_SIZE", 1) > 1


def check_ranks(world: int, rank: int, local_rank: int, local_world: int | None) -> None:
    """The launcher's numbers are consistent, or one line saying which is not (checked before
    the rendezvous, which would otherwise wait out its whole timeout for a rank that cannot be).

    >>> check_ranks(2, 1, 1, 2)
    >>> check_ranks(2, 5, 0, None)
    Traceback (most recent call last):
    ...
    harness.core.errors.UserError: RANK=5 with WORLD_SIZE=2: a rank is 0..1; each process needs its own RANK below WORLD_SIZE (torchrun sets both)
    """
    if rank < 0 or rank >= world:
        raise UserError(f"RANK={rank} with WORLD_SIZE={world}: a rank is 0..{world - 1}; each process needs its "
                        "own RANK below WORLD_SIZE (torchrun sets both)")
    if local_world is not None and not 1 <= local_world <= world:
        raise UserError(f"LOCAL_WORLD_SIZE={local_world} with WORLD_SIZE={world}: a node runs 1..{world} ranks")
    limit = local_world if local_world is not None else world
    if local_rank < 0 or local_rank >= limit:
        name = "LOCAL_WORLD_SIZE" if local_world is not None else "WORLD_SIZE"
        raise UserError(f"LOCAL_RANK={local_rank} with {name}={limit}: a local rank is 0..{limit - 1} "
                        "(the rank's index on its node; torchrun sets it)")


def from_env(device: str) -> tuple[DistContext, str]:
    """Join the launcher's process group; returns (context, this rank's device)."""
    global _current
    if _current.active:
        return _current, device
    world = _int_env("WORLD_SIZE", 1)
    if world < 1:
        raise UserError(f"WORLD_SIZE={world}: the number of processes is at least 1")
    if world == 1:
        return SINGLE, device
    rank, local_rank = _int_env("RANK"), _int_env("LOCAL_RANK", 0)
    local_world = _int_env("LOCAL_WORLD_SIZE") if os.environ.get("LOCAL_WORLD_SIZE") is not None else None
    check_ranks(world, rank, local_rank, local_world)
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not addr or not port:
        _int_env("MASTER_ADDR" if not addr else "MASTER_PORT")
    starting = DistContext(rank=rank, world_size=world, local_rank=local_rank)
    from harness.parallel import launcher_stop

    launcher_stop.install(lambda: _stopped(_current if _current.active else starting))
    cuda = device.startswith("cuda")
    if cuda:
        import torch

        local_world = local_world if local_world is not None else min(world, max(1, torch.cuda.device_count()))
        device = cuda_device_for(local_rank, local_world, torch.cuda.device_count())
        torch.cuda.set_device(device)
    backend = "nccl" if cuda else "gloo"
    _init_group(backend, rank, world, addr, port)
    ctx = DistContext(rank=rank, world_size=world, local_rank=local_rank, backend=backend)
    _current = ctx
    ctx.peers = [tuple(p) for p in gather_objects((socket.gethostname(), os.getpid()))]
    return ctx, device


def _init_group(backend: str, rank: int, world: int, addr: str, port: str) -> None:
    import torch.distributed as dist

    wait = timeout_s()
    try:
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=dt.timedelta(seconds=wait))
    except Exception as exc:  # noqa: BLE001 - every rendezvous failure is the same user problem
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"rank {rank} of {world}: no rendezvous with the other ranks at {addr}:{port} within "
                        f"{wait:g}s ({first}); start every rank (torchrun --nproc_per_node {world} ...) or "
                        f"unset WORLD_SIZE") from None


def shutdown() -> None:
    global _current
    from harness.parallel import launcher_stop

    launcher_stop.uninstall()
    if _current.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _current = SINGLE


# ---------------------------------------------------------------- failures


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed child not yet reaped by its launcher is a zombie
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return False


def _failed_ranks(ctx: DistContext) -> list[int]:
    host = socket.gethostname()
    return [r for r, (h, pid) in enumerate(ctx.peers) if r != ctx.rank and h == host and _dead(pid)]


def _dead_peers(ctx: DistContext) -> list[int]:
    import time

    dead = []
    for _ in range(20):  # the peer's exit may trail its closed socket (or the launcher's signal) a moment
        dead = _failed_ranks(ctx)
        if dead:
            break
        time.sleep(0.05)
    return dead


def _who(ctx: DistContext, dead: list[int]) -> str:
    """``rank 1 of 2 (host h, pid 123)``: the dead ranks, each with its host and pid."""
    if not dead:
        return f"a peer rank of {ctx.world_size} (on another host)"
    ranks = f"rank{'s' if len(dead) > 1 else ''} {', '.join(map(str, dead))} of {ctx.world_size}"
    return f"{ranks} ({'; '.join(f'host {ctx.peers[r][0]}, pid {ctx.peers[r][1]}' for r in dead)})"


def _failure(ctx: DistContext, exc: BaseException) -> RankFailed:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return RankFailed(f"{_who(ctx, _dead_peers(ctx))} died during {ctx.stage}; the run is abandoned and no record "
                      f"written (finished cache chunks stay valid for a re-run) [rank {ctx.rank}: {first}]")


def _stopped(ctx: DistContext) -> RankFailed:
    """The line for a SIGTERM from the launcher: the peer that died, when one on this host has."""
    dead = _dead_peers(ctx) if ctx.peers else []
    me = f"rank {ctx.rank} of {ctx.world_size} (host {socket.gethostname()}, pid {os.getpid()})"
    if dead:
        return RankFailed(f"{_who(ctx, dead)} died; the launcher then stopped {me} during {ctx.stage} (SIGTERM); "
                          "the run is abandoned and no record written (finished cache chunks stay valid for a re-run)")
    return RankFailed(f"{me} stopped by SIGTERM during {ctx.stage} (a launcher stops every rank when one fails: "
                      "its report names that rank); the run is abandoned and no record written")


def _collective(fn):
    ctx = current()
    try:
        return fn()
    except RankFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - gloo/NCCL raise RuntimeError/DistBackendError subclasses
        raise _failure(ctx, exc) from None


# ---------------------------------------------------------------- collectives


def gather_objects(obj) -> list:
    """Every rank's ``obj`` in rank order, on every rank (``[obj]`` in one process)."""
    ctx = current()
    if not ctx.active:
        return [obj]
    import torch.distributed as dist

    out = [None] * ctx.world_size
    _collective(lambda: dist.all_gather_object(out, obj))
    return out


def all_reduce(tensor, op: str = "sum"):
    """In-place all-reduce (``sum`` or ``max``) of a tensor; returns it. Identity in one process.
    A CPU tensor is moved to the rank's device for NCCL and back."""
    ctx = current()
    if not ctx.active:
        return tensor
    import torch
    import torch.distributed as dist

    red = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
    moved = tensor.to(f"cuda:{torch.cuda.current_device()}") if ctx.backend == "nccl" else tensor
    _collective(lambda: dist.all_reduce(moved, op=red))
    if moved is not tensor:
        tensor.copy_(moved)
    return tensor


def barrier() -> None:
    ctx = current()
    if ctx.active:
        import torch.distributed as dist

        _collective(dist.barrier)


def set_stage(name: str) -> None:
    current().stage = name
