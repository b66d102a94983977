"""Process groups built from the environment, so one code path serves 1 CPU process, N local
processes (--num-gpus / torchrun) and multi-node SLURM jobs. NCCL on GPU, gloo on CPU.
The rank queries and collectives here are what models and training loops use."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from .distributed_env import export_distributed_env


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def init_from_env(device: str) -> None:
    """Join the process group described by RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT (set by
    torchrun, our launcher, or derived from SLURM's variables) if WORLD_SIZE > 1; otherwise stay a
    single process."""
    export_distributed_env()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        return
    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


@torch.no_grad()
def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every process along dim 0 (rank order); no gradient."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """As all_gather_cat, but differentiable: the gradient of each part flows back to the
    process that made it (SimCLR's and AMDIM's negatives from the global batch)."""
    if not is_distributed():
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()))


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    if is_distributed():
        dist.broadcast(tensor, src)
    return tensor


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over every process, in place (no gradient); itself in one process."""
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor


def all_reduce_mean(value: float, device) -> float:
    if not is_distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / get_world_size()
