"""The one way from a launcher's environment to torch.distributed's variables (RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), for every stage, Detectron2's included.

Three launchers start our processes: torchrun and our local launcher (pretrain.common.launch) set
the variables themselves; SLURM's `srun` and submitit's jobs (slurm/jobs.py) only set SLURM_*.
For those, submitit's TorchDistributedEnvironment reads the task ids, the node list and the job id
(the master port is derived from it, so every task of a job agrees without talking)."""

from __future__ import annotations

import os

TORCH_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


def _slurm_torch_environment():
    """submitit's TorchDistributedEnvironment for any SLURM task: its own constructor asks
    JobEnvironment(), which answers only inside jobs that submitit started, not under a plain
    `srun`; SLURM's variables (read by SlurmJobEnvironment) are the same in both."""
    from submitit.helpers import TorchDistributedEnvironment
    from submitit.slurm.slurm import SlurmJobEnvironment

    class SlurmTorchEnvironment(TorchDistributedEnvironment):
        def __init__(self) -> None:
            job = self._job_env = SlurmJobEnvironment()
            self.master_addr = job.hostnames[0]
            self.master_port = self._get_master_port()  # $MASTER_PORT, else from the job id
            self.rank, self.world_size = job.global_rank, job.num_tasks
            self.local_rank = job.local_rank
            self.local_world_size = job.num_tasks // job.num_nodes

    return SlurmTorchEnvironment()


def export_slurm_env() -> None:
    """In a SLURM task: set torch.distributed's variables from the job's (the first node of the
    job is the master), replacing any inherited from the submitting shell. MASTER_PORT is kept
    if set (a user's choice)."""
    # CUDA_VISIBLE_DEVICES stays: each process picks its GPU by LOCAL_RANK (init_from_env).
    _slurm_torch_environment().export(set_cuda_visible_devices=False, overwrite=True)


def export_distributed_env() -> str:
    """Make sure torch.distributed's variables describe this process, and say who set them:
    "torchrun" (already set: torchrun or our launcher), "slurm" (derived from a multi-task SLURM
    job, started by srun without torchrun) or "single" (nothing to join)."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return "torchrun"
    if "SLURM_JOB_ID" in env and "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        export_slurm_env()
        return "slurm"
    return "single"
