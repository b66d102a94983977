"""What a SLURM task runs: one stage, resumed from its latest checkpoint whenever it (re)starts.

Every task of a job runs `StageJob()`; its rank, world size and master come from submitit's
JobEnvironment. On a time-out or preemption submitit calls `checkpoint()`, which resubmits the same
job: it then resumes (pretraining and lincls at their last periodic checkpoint, detection through
Detectron2's --resume), so a requeue loses at most one checkpoint period.
"""
from __future__ import annotations

import os
import re

import submitit

STAGES = ("pretrain", "lincls", "detection")


def set_distributed_env(env: submitit.JobEnvironment) -> None:
    """torch.distributed's variables from the job: the first node of the job is the master."""
    job_digits = re.sub(r"\D", "", str(env.job_id)) or "0"
    os.environ.update(
        RANK=str(env.global_rank), LOCAL_RANK=str(env.local_rank), WORLD_SIZE=str(env.num_tasks),
        LOCAL_WORLD_SIZE=str(env.num_tasks // max(1, env.num_nodes)),
        MASTER_ADDR=env.hostnames[0],
        MASTER_PORT=os.environ.get("MASTER_PORT", str(20000 + int(job_digits) % 20000)))


def run_pretrain(config_file: str, opts: list[str]):
    from pretrain.config import load_cfg
    from pretrain.engine.trainer import train

    return train(load_cfg(config_file, opts), resume=True)


def run_lincls(config_file: str, opts: list[str]):
    from pretrain.evaluation.linear import load_lincls_cfg, run_linear_readout

    return run_linear_readout(load_lincls_cfg(config_file, opts), resume=True)


def run_detection(config_file: str, opts: list[str]):
    from detectron2.engine import default_argument_parser

    from detection import train_net
    from detection.launch import run_from_env

    args = default_argument_parser().parse_args(["--config-file", config_file, "--resume", *opts])
    return run_from_env(train_net.main, (args,))


RUNNERS = {"pretrain": run_pretrain, "lincls": run_lincls, "detection": run_detection}


class StageJob(submitit.helpers.Checkpointable):
    def __init__(self, stage: str, config_file: str, opts: list[str]):
        self.stage = stage
        self.config_file = config_file
        self.opts = list(opts)

    def __call__(self):
        env = submitit.JobEnvironment()
        set_distributed_env(env)
        print(f"[{self.stage}] task {env.global_rank}/{env.num_tasks} of job {env.job_id} "
              f"(restart {os.environ.get('SLURM_RESTART_COUNT', '0')})", flush=True)
        result = RUNNERS[self.stage](self.config_file, self.opts)
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
        print(f"[sweep] point {point.name} in job {env.job_id} "
              f"(restart {os.environ.get('SLURM_RESTART_COUNT', '0')})", flush=True)
        result = run_point(self.sweep, point)
        return None if result is None else result["accuracy"]
