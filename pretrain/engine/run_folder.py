"""The output folder of a training run (pretraining, supervised baseline, linear readout), made
safe before the first write: a finished or foreign run is never overwritten or mixed in by
accident, and a resume continues the run it finds or says why it cannot.

- a non-empty folder is refused unless `resume` (continue the run there) or `force` (delete that
  run's files and start over);
- `resume` without a checkpoint says so in one line and starts fresh (a SLURM job's first start);
- a resume whose requested config differs from the checkpoint's in a model-defining key (the
  stage's `model_keys`) is refused before anything is written;
- temp files of checkpoint writes killed before their rename are deleted;
- metrics rows past the checkpoint (the part of the run the resume repeats) are dropped."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

import torch
from fvcore.common.config import CfgNode

from ..common.cli import set_interrupted_hint
from ..common.errors import ConfigError, OutputDirError
from ..common import distributed as du
from ..common.output_dir import config_differences, only_start_files, remove_stale_temp_files
from .checkpoint import atomic_write_text, last_checkpoint, load_checkpoint
from .metrics import METRICS_FILE, drop_rows_after

CONFIG_FILE = "config.yaml"
# What a start writes before its first step: a folder holding only these (a start that failed on
# a typo or on its data) is no run, and a rerun starts there without --force.
START_FILES = (CONFIG_FILE, "data_check.json", "bad_images.txt", "subset.txt")
# What a training run writes into its folder; --force deletes these and nothing else.
# The data check's files (pretrain/data/checks.py) belong to the run too: --force starts over.
RUN_FILES = (
    "last_checkpoint",
    "model_final.pth",
    METRICS_FILE,
    CONFIG_FILE,
    "data_check.json",
    "bad_images.txt",
    "log.txt",
    "subset.txt",
    "result.json",
)
RUN_FOLDERS = ("tensorboard",)


@dataclass
class RunStart:
    """Where a run starts: `state` is the checkpoint to resume from (None: a fresh start)."""

    output_dir: str
    resume: bool = False
    force: bool = False
    state: dict | None = None
    checkpoint: str = ""

    def step(self, step_key: str) -> int:
        return self.state[step_key] if self.state else 0


def config_mismatch(stored: str, requested: CfgNode, model_keys: tuple[str, ...]) -> list[str]:
    """'KEY: stored -> requested' for each leaf under `model_keys` (keys or whole nodes) that
    differs; keys the stored config lacks (written before they existed) are not compared."""
    return [
        f"{key}: {old!r} -> {new!r}"
        for key, old, new in config_differences(stored, requested, model_keys)
    ]


def _previous_run_files(output_dir: str) -> list[str]:
    names = set(os.listdir(output_dir))
    return sorted(
        n
        for n in names
        if n in RUN_FILES
        or n in RUN_FOLDERS
        or (n.startswith("checkpoint_") and n.endswith(".pth"))
    )


def _delete(output_dir: str, names: list[str]) -> None:
    for name in names:
        path = os.path.join(output_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def check_run_folder(
    cfg: CfgNode, model_keys: tuple[str, ...], resume: bool = False, force: bool = False
) -> RunStart:
    """Where a run in cfg.OUTPUT_DIR starts, read-only: raises OutputDirError for a non-empty
    folder without resume or force, ConfigError for a resume whose model-defining keys differ
    from the checkpoint's."""
    output_dir = cfg.OUTPUT_DIR
    entries = os.listdir(output_dir) if os.path.isdir(output_dir) else []
    start = RunStart(output_dir, resume=resume, force=force)
    if resume:
        start.checkpoint = last_checkpoint(output_dir) or ""
        if start.checkpoint:
            start.state = load_checkpoint(start.checkpoint)
            stored = start.state.get("cfg")
            differences = config_mismatch(stored, cfg, model_keys) if stored else []
            if differences:
                raise ConfigError(
                    f"--resume: {start.checkpoint} was trained with another model or data "
                    f"recipe ({'; '.join(differences)}); use another OUTPUT_DIR, or --force "
                    "without --resume to start over there"
                )
    elif entries and not force and not only_start_files(entries, START_FILES):
        raise OutputDirError(
            f"OUTPUT_DIR {output_dir} is not empty ({len(entries)} entries, e.g. "
            f"{sorted(entries)[0]}): pass --resume to continue the run in it, "
            "--force to delete that run's files and start over, or choose "
            "another OUTPUT_DIR"
        )
    return start


def resume_hint(output_dir: str) -> str:
    """What the Ctrl-C line adds: the checkpoint a --resume continues from."""
    checkpoint = last_checkpoint(output_dir)
    if checkpoint:
        return f"the last checkpoint is {checkpoint}: rerun the same command with --resume"
    return (
        f"no checkpoint was written in {output_dir} yet: rerun the same command with "
        "--resume (it starts over)"
    )


def open_run_folder(
    cfg: CfgNode,
    model_keys: tuple[str, ...],
    step_key: str,
    resume: bool = False,
    force: bool = False,
) -> RunStart:
    """check_run_folder in every process, then global rank 0 prepares the folder: creates it,
    deletes stale temp files (and with force the previous run's files), drops metrics rows past
    the checkpoint, writes config.yaml. Returns where the run starts."""
    start = check_run_folder(cfg, model_keys, resume, force)
    set_interrupted_hint(lambda: resume_hint(cfg.OUTPUT_DIR))  # the Ctrl-C line names it
    if du.is_distributed():
        torch.distributed.barrier()  # every process has looked before the first write
    if du.is_main_process():
        _prepare(cfg, start, step_key)
    if du.is_distributed():
        torch.distributed.barrier()
    return start


def _prepare(cfg: CfgNode, start: RunStart, step_key: str) -> None:
    output_dir = start.output_dir
    os.makedirs(output_dir, exist_ok=True)
    stale = remove_stale_temp_files(output_dir)
    if stale:
        print(f"removed {len(stale)} temp files of interrupted writes: {', '.join(stale)}")
    if start.state is not None:
        dropped = drop_rows_after(output_dir, step_key, start.state[step_key])
        if dropped:
            print(f"{METRICS_FILE}: dropped {dropped} rows logged after the checkpoint")
    else:
        if start.resume:
            print(f"--resume: no checkpoint in {output_dir}; starting fresh", flush=True)
        previous = _previous_run_files(output_dir)  # only there with force or resume
        if previous:
            _delete(output_dir, previous)
            print(
                f"deleted the files of the earlier run in {output_dir}: {', '.join(previous)}",
                flush=True,
            )
    atomic_write_text(cfg.dump(), os.path.join(output_dir, CONFIG_FILE))
