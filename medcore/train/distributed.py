"""Process-group start-up with a short timeout and a preflight all-reduce, so a bad port or missing peer fails fast."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from medcore.errors import MedcoreError


class DistributedStartError(MedcoreError):
    """The ranks could not form a group; `hint` says what to check."""

    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _single_process_env() -> None:
    """Plain `python -m medcore.train RUN_DIR` (no launcher): a world of one on a free local port."""
    if "RANK" in os.environ:
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def init_distributed(timeout_s: float = 60, device: str = "cpu", local_rank: int | None = None) -> DistContext:
    """Join the process group (gloo on CPU, nccl on CUDA) and prove it works with one all-reduce.

    Works under torchrun, the deepspeed launcher (which also passes --local_rank) and SLURM-style env vars.

    Raises:
        DistributedStartError: the group did not form or the all-reduce failed within `timeout_s`.
    """
    _single_process_env()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", local_rank or 0))
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    try:
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s), rank=rank, world_size=world)
        probe = torch.ones(1, device=torch_device)
        dist.all_reduce(probe)
        got = int(probe.item())
    except (RuntimeError, ValueError, TimeoutError) as exc:
        raise DistributedStartError(
            f"Rank {rank} of {world} could not reach its peers via {where} within {timeout_s:g}s "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).",
            "Check that every node runs the same command with the same rendezvous address and port, that the "
            "port is open between nodes, and that no other job uses it; then resume the run.",
        ) from None
    if got != world:
        raise DistributedStartError(
            f"Preflight all-reduce on rank {rank} summed to {got}, expected {world}.",
            "The ranks disagree on the world size: launch every node with the same --nnodes and --nproc-per-node.",
        )
    import deepspeed

    deepspeed.init_distributed(dist_backend=backend)  # adopts the group formed above
    return DistContext(rank, world, local_rank, torch_device, backend)


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Sum a few scalars over all ranks in one collective (float64: token counts stay exact)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    if ctx.world_size > 1:
        dist.all_reduce(tensor)
    return tensor.tolist()


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group through DeepSpeed once it adopted it: DeepSpeed caches groups (its clone of the
    world) and forgets them only when it destroys the group itself. A second job in the same process (a notebook,
    the test suite) would otherwise broadcast over a destroyed group ("Group ... is not registered")."""
    if not dist.is_initialized():
        return
    import deepspeed.comm

    if deepspeed.comm.is_initialized():
        deepspeed.comm.destroy_process_group()
    else:
        dist.destroy_process_group()
