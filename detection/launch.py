"""Join Detectron2 processes into one group without Detectron2's `launch`, which always initialises
NCCL: gloo for CPU processes (tests, GPU-less machines). Rank, world size and master come from the
environment, as for every stage (pretrain.common.distributed_env): torchrun, SLURM / submitit
(slurm/submit.py), or our local launcher (pretrain.common.launch)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from pretrain.common.distributed_env import export_distributed_env
from pretrain.common.launch import launch


def _ddp_on_cpu() -> None:
    """Detectron2 v0.6's DefaultTrainer wraps the model with create_ddp_model, which always passes
    device_ids=[local rank]: valid for GPU modules only. CPU modules need device_ids=None."""
    import detectron2.engine.defaults as defaults

    create = defaults.create_ddp_model
    if getattr(create, "_cpu_ready", False):
        return

    def create_ddp_model_cpu(model, **kwargs):
        kwargs.setdefault("device_ids", None)
        return create(model, **kwargs)

    create_ddp_model_cpu._cpu_ready = True
    defaults.create_ddp_model = create_ddp_model_cpu


def join_process_group(rank: int, world_size: int, local_world_size: int, init_method: str) -> None:
    """What Detectron2's launch does per process, with NCCL on GPUs and gloo on CPUs."""
    from detectron2.utils import comm

    use_cuda = torch.cuda.is_available()
    dist.init_process_group(
        "nccl" if use_cuda else "gloo", init_method=init_method, rank=rank, world_size=world_size
    )
    # Detectron2 asks its per-machine group for the local rank and size.
    for machine in range(world_size // local_world_size):
        ranks = list(range(machine * local_world_size, (machine + 1) * local_world_size))
        group = dist.new_group(ranks)
        if rank in ranks:
            comm._LOCAL_PROCESS_GROUP = group
    if use_cuda:
        torch.cuda.set_device(rank % local_world_size)
    else:
        _ddp_on_cpu()
    comm.synchronize()


def launch_cpu(main_func, num_processes: int, args=()) -> None:
    """N CPU processes on this machine, joined through gloo."""
    launch(run_from_env, num_processes, (main_func, args))


def run_from_env(main_func, args=()):
    """In a process started by our launcher, SLURM or torchrun: join the group that RANK,
    WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT describe, then run."""
    export_distributed_env()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        join_process_group(
            int(os.environ["RANK"]),
            world_size,
            int(os.environ.get("LOCAL_WORLD_SIZE", world_size)),
            "env://",
        )
    return main_func(*args)
