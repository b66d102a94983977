"""What a SLURM task runs: one stage (pretrain/stages.py), resumed from its latest checkpoint
whenever it (re)starts.

Every task of a job runs `StageJob()`; its rank, world size and master come from the job's
environment (pretrain.common.distributed_env, as for srun and torchrun). On a time-out or
preemption submitit calls `checkpoint()`, which resubmits the same job: it then resumes
(pretraining, supervised, lincls and view learning at their last checkpoint, which the signal
itself wrote; detection through Detectron2's --resume; a sweep at its unfinished points).
"""

from __future__ import annotations

import os

import submitit

from pretrain.common.distributed_env import export_slurm_env
from pretrain.stages import get_stage


def _restarts() -> str:
    return os.environ.get("SLURM_RESTART_COUNT", "0")


class StageJob(submitit.helpers.Checkpointable):
    def __init__(self, stage: str, config_file: str, opts: list[str]):
        self.stage = stage
        self.config_file = config_file
        self.opts = list(opts)

    def __call__(self):
        env = submitit.JobEnvironment()
        export_slurm_env()
        print(
            f"[{self.stage}] task {env.global_rank}/{env.num_tasks} of job {env.job_id} "
            f"(restart {_restarts()})",
            flush=True,
        )
        result = get_stage(self.stage).run(self.config_file, self.opts, resume=True)
        # Results must pickle back to the submitter: paths and numbers, not Detectron2 objects.
        return result if isinstance(result, (str, float, int, type(None))) else str(result)

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """Requeue the same stage; it resumes from what it saved."""
        return submitit.helpers.DelayedSubmission(StageJob(self.stage, self.config_file, self.opts))


class SweepPointJob(submitit.helpers.Checkpointable):
    """One point of a sweep (pretrain/sweep.py) as a task of a job array (`executor.map_array`):
    called with the point; a requeue (submitit's default `checkpoint`: the same call again)
    skips it if its result is written, else resumes its pretraining from the last checkpoint."""

    def __init__(self, sweep):
        self.sweep = sweep

    def __call__(self, point):
        from pretrain.sweep import run_point

        env = submitit.JobEnvironment()
        print(
            f"[sweep] point {point.folder} in job {env.job_id} (restart {_restarts()})", flush=True
        )
        result = run_point(self.sweep, point)
        return None if result is None else result["accuracy"]
