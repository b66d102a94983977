#!/usr/bin/env python
"""Submit a stage to SLURM through submitit: one task per GPU (or --tasks-per-node CPU tasks), the
process group built from the job's environment, requeued after a time-out or preemption and resumed
from the stage's last checkpoint.

    python slurm/submit.py {pretrain,lincls,knn,supervised,finetune,detection,learn_views,sweep} [--config-file CFG] [--nodes N]
        [--gpus-per-node G] [--tasks-per-node T] [--cpus-per-task C] [--mem-gb M] [--partition P]
        [--timeout-min T] [--account A] [--qos Q] [--constraint C] [--comment TEXT]
        [--job-dir DIR] [--dry-run] [--wait] [KEY VALUE ...]

The job's logs, its resolved config and a submission record go to JOB_DIR/<job id>/.
The stages (pretrain/stages.py) take a config file and/or KEY VALUE overrides; knn takes
tools/knn.py's settings as keys (MODEL.ARCH, MODEL.WEIGHTS, DATA.ROOT, DATA.VAL_ROOT, ...), sweep
takes tools/sweep.py's arguments after `--` (a sweep's points run one after the other in the job),
learn_views tools/learn_views.py's arguments after `--`. lincls, knn, supervised, finetune,
learn_views and sweep run as one task.
"""  # noqa: E501 (the usage lines are --help's text as printed: a rewrap would change it)

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys

from pretrain.common.cli import apply_trailing_flags, run_entry_point
from pretrain.common.errors import ConfigError
from pretrain.stages import STAGES, get_stage
from slurm.request_checks import check_input_paths, check_resources


def resolved_cfg(stage: str, config_file: str, opts: list[str]):
    """The full config the job will run; a bad file or key fails here, before submitting."""
    return get_stage(stage).load_config(config_file, opts)


def add_resource_arguments(parser: argparse.ArgumentParser) -> None:
    """What a job asks SLURM for (read by `slurm_parameters`); shared with tools/sweep.py."""
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=0)
    parser.add_argument(
        "--tasks-per-node", type=int, default=0, help="default: one per GPU, or 1 without GPUs"
    )
    parser.add_argument("--cpus-per-task", type=int, default=10)
    parser.add_argument("--mem-gb", type=int, default=0, help="per node; 0 = the cluster default")
    parser.add_argument("--partition")
    parser.add_argument("--timeout-min", type=int, default=60 * 72)
    parser.add_argument(
        "--signal-delay-s",
        type=int,
        default=120,
        help="how long before the time limit the job is told to requeue",
    )
    parser.add_argument("--max-requeues", type=int, default=30)
    parser.add_argument("--account")
    parser.add_argument("--qos")
    parser.add_argument("--constraint")
    parser.add_argument("--comment")
    parser.add_argument("--job-name", default="")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file",
        default="",
        metavar="FILE",
        help="the stage's config (pretrain, lincls, knn, supervised, "
        "finetune: optional, the defaults and KEY VALUE overrides may do; "
        "learn_views: none)",
    )
    add_resource_arguments(parser)
    parser.add_argument("--job-dir", default="", help="default: output/slurm/<stage>")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the sbatch script and the resolved config; submit nothing",
    )
    parser.add_argument("--wait", action="store_true", help="wait for the job and print its result")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    # The stage comes first; argparse cannot mix a leading positional with trailing KEY VALUEs.
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        parser.parse_args(["--help"])  # prints the help, exits 0
    if not argv or argv[0] not in STAGES:
        raise ConfigError(f"the first argument must be a stage: {', '.join(STAGES)} (see --help)")
    args = parser.parse_args(argv[1:])
    args.stage = argv[0]
    apply_trailing_flags(args, ("--dry-run", "--wait"))
    return args


def check_tasks(args) -> None:
    """A stage that is no process group runs as one task: N tasks would be N copies writing the
    same folder."""
    if not get_stage(args.stage).distributed and (
        args.nodes != 1 or args.tasks_per_node > 1 or args.gpus_per_node > 1
    ):
        raise ConfigError(
            f"{args.stage} runs as one task: --nodes 1, --tasks-per-node 0 or 1, "
            "--gpus-per-node 0 or 1"
        )


def slurm_parameters(args) -> dict:
    tasks = args.tasks_per_node or max(1, args.gpus_per_node)
    params = dict(
        job_name=args.job_name or f"{args.stage}",
        nodes=args.nodes,
        ntasks_per_node=tasks,
        cpus_per_task=args.cpus_per_task,
        time=args.timeout_min,
        signal_delay_s=args.signal_delay_s,
        partition=args.partition,
        account=args.account,
        qos=args.qos,
        constraint=args.constraint,
        comment=args.comment,
    )
    if args.gpus_per_node:
        params["gpus_per_node"] = args.gpus_per_node
    if args.mem_gb:
        params["mem"] = f"{args.mem_gb}GB"
    return {k: v for k, v in params.items() if v is not None}


def sbatch_script(job_dir: str, params: dict, array_size: int | None = None) -> str:
    """The script submitit would hand to sbatch (for --dry-run); `array_size`: a job array of that
    many tasks, as `executor.map_array` submits it."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {job_dir}/%j"
    return _make_sbatch_string(
        command=command, folder=f"{job_dir}/%j", map_count=array_size, **params
    )


def build_executor(job_dir: str, params: dict, args):
    """A submitit executor for `params` (slurm_parameters), after checking the cluster can run
    them; a requeue after a time-out or preemption is allowed args.max_requeues times."""
    import submitit

    from slurm.cluster import check_request

    check_request(args.partition, params["ntasks_per_node"], args.cpus_per_task, args.gpus_per_node)
    executor = submitit.SlurmExecutor(
        folder=os.path.join(job_dir, "%j"), max_num_timeout=args.max_requeues
    )
    executor.update_parameters(**params)
    return executor


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.config_file and not os.path.isfile(args.config_file):
        raise ConfigError(f"config file {args.config_file}: no such file")
    check_tasks(args)
    check_resources(args)
    cfg = resolved_cfg(args.stage, args.config_file, args.opts)
    check_input_paths(args.stage, cfg)
    config_text = get_stage(args.stage).describe(cfg)
    job_dir = os.path.abspath(args.job_dir or os.path.join("output", "slurm", args.stage))
    params = slurm_parameters(args)

    if args.dry_run:
        print(sbatch_script(job_dir, params))
        print(f"# resolved config ({args.stage}, {args.config_file or 'defaults and overrides'}):")
        print(config_text)
        return 0

    from slurm.jobs import StageJob

    executor = build_executor(job_dir, params, args)
    job = executor.submit(StageJob(args.stage, args.config_file, args.opts))
    record_dir = os.path.join(job_dir, str(job.job_id))
    os.makedirs(record_dir, exist_ok=True)
    with open(os.path.join(record_dir, "config.yaml"), "w") as f:
        f.write(config_text)
    with open(os.path.join(record_dir, "submission.json"), "w") as f:
        json.dump(
            {
                "job_id": job.job_id,
                "stage": args.stage,
                "config_file": args.config_file,
                "opts": args.opts,
                "slurm": params,
                "argv": sys.argv,
                "submitted": datetime.datetime.now().isoformat(timespec="seconds"),
            },
            f,
            indent=2,
        )
    print(f"submitted {args.stage} as job {job.job_id}; logs in {record_dir}")
    if args.wait:
        print(f"result: {job.result()}")
    return 0


def entry_point() -> None:
    run_entry_point(main)


if __name__ == "__main__":
    entry_point()
