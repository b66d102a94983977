"""What slurm/submit.py refuses before anything reaches the scheduler: counts and times SLURM
would misread (e.g. --timeout-min 0 becomes `--time=0`, no limit at all) and input paths that
do not exist, which would only fail once the job left the queue."""

from __future__ import annotations

import os

from pretrain.common.errors import ConfigError, DatasetError
from pretrain.stages import get_stage

# argument -> the smallest value that makes sense
_MINIMUM = {
    "nodes": 1,
    "gpus_per_node": 0,
    "tasks_per_node": 0,
    "cpus_per_task": 1,
    "mem_gb": 0,
    "timeout_min": 1,
    "signal_delay_s": 0,
    "max_requeues": 0,
}
_DATASET_SPEC_PATHS = ("root", "json", "images")  # the path fields of DATASETS.REGISTER specs


def check_resources(args) -> None:
    """The counts and times of add_resource_arguments, or ConfigError naming the option."""
    for dest, minimum in _MINIMUM.items():
        value = getattr(args, dest, None)
        if value is not None and value < minimum:
            why = " (SLURM reads --time=0 as no limit)" if dest == "timeout_min" else ""
            raise ConfigError(
                f"--{dest.replace('_', '-')} {value}: must be at least {minimum}{why}"
            )
    if args.signal_delay_s >= args.timeout_min * 60:
        raise ConfigError(
            f"--signal-delay-s {args.signal_delay_s}: the requeue signal must come "
            f"before the time limit (--timeout-min {args.timeout_min} = "
            f"{args.timeout_min * 60} s)"
        )


def _local(path: str) -> bool:
    return bool(path) and "://" not in path


def input_paths(stage: str, cfg) -> list[tuple[str, str]]:
    """(config key, path) of every file or folder the stage reads, as the job will see them."""
    declared = get_stage(stage).input_paths(cfg)
    if declared is not None:
        return declared
    if stage == "pretrain":
        paths = [("DATA.ROOT", cfg.DATA.ROOT)]
        if cfg.EVAL.KNN_PERIOD:
            paths += [
                ("EVAL.KNN_TRAIN_ROOT", cfg.EVAL.KNN_TRAIN_ROOT),
                ("EVAL.KNN_TEST_ROOT", cfg.EVAL.KNN_TEST_ROOT),
            ]
        return paths
    if stage in ("lincls", "knn", "supervised", "finetune"):  # one naming (pretrain/config.py)
        paths = [("DATA.ROOT", cfg.DATA.ROOT)]
        if cfg.DATA.get("SUBSET_FILE", ""):
            paths.append(("DATA.SUBSET_FILE", cfg.DATA.SUBSET_FILE))
        if cfg.DATA.VAL_ROOT or stage != "supervised":
            paths.append(("DATA.VAL_ROOT", cfg.DATA.VAL_ROOT))
        weights = cfg.MODEL.get("WEIGHTS", "")
        return paths + ([("MODEL.WEIGHTS", weights)] if _local(weights) else [])
    if stage == "sweep":  # its points' configs are checked by the sweep itself (Sweep.check)
        return []
    from detection.datasets import parse_spec

    paths = [("MODEL.WEIGHTS", cfg.MODEL.WEIGHTS)] if _local(cfg.MODEL.WEIGHTS) else []
    for spec in cfg.DATASETS.REGISTER:
        fields = parse_spec(spec)
        paths += [
            (f"DATASETS.REGISTER {fields['name']} {key}=", fields[key])
            for key in _DATASET_SPEC_PATHS
            if key in fields
        ]
    return paths


def check_input_paths(stage: str, cfg) -> None:
    """DatasetError naming the first missing input (relative paths: from the current folder,
    where the job starts too)."""
    for key, path in input_paths(stage, cfg):
        if not path:
            raise ConfigError(f"{key} is empty: the {stage} job would have nothing to read")
        if not os.path.exists(path):
            raise DatasetError(f"{key} {path}: no such file or folder")
