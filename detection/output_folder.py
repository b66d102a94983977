"""detection/train_net.py's output folder: the project's rule (pretrain/common/output_dir.py)
applied to OUTPUT_DIR, a resume refused when the run there is of another config, and the Ctrl-C
line that names the checkpoint to resume from.

--eval-only only adds metrics_eval.json and inference/ to a folder, so it may use a run's
folder like --resume."""

from __future__ import annotations

import os

import yaml

from pretrain.common.cli import set_interrupted_hint
from pretrain.common.errors import OutputDirError
from pretrain.common.output_dir import config_differences, prepare_output_dir

# What a start writes before its first step (data checks, Detectron2's default_setup); a folder
# holding only these is no run: a start that failed on a typo or on its data is rerun as it was.
START_FILES = ("bad_images.txt", "config.yaml", "log.txt", "log.txt.rank*")

# What makes a run another run: its model, its initial weights, its data and its seed (a longer
# schedule, another batch or learning rate may continue the same run).
RUN_DEFINING_KEYS = (
    "MODEL.META_ARCHITECTURE",
    "MODEL.BACKBONE.NAME",
    "MODEL.RESNETS.DEPTH",
    "MODEL.RESNETS.RES2_OUT_CHANNELS",
    "MODEL.RESNETS.STEM_TYPE",
    "MODEL.ROI_HEADS.NAME",
    "MODEL.ROI_HEADS.NUM_CLASSES",
    "MODEL.MASK_ON",
    "MODEL.WEIGHTS",
    "DATASETS.TRAIN",
    "SEED",
)


def check_same_run(cfg, output_dir: str) -> None:
    """OutputDirError if OUTPUT_DIR/config.yaml (the run there) differs from `cfg` in a
    RUN_DEFINING_KEYS key; nothing to compare is no error."""
    try:
        with open(os.path.join(output_dir, "config.yaml")) as f:
            saved = f.read()
        differences = config_differences(saved, cfg, RUN_DEFINING_KEYS)
    except (OSError, yaml.YAMLError):
        return
    if differences:
        key, before, asked = differences[0]
        raise OutputDirError(
            f"OUTPUT_DIR {output_dir} holds a run with {key} {before}, not "
            f"{asked}: --resume continues only the same run (use another "
            "OUTPUT_DIR for a new one)"
        )


def prepare_detection_output(cfg, args) -> str:
    """ "fresh" or "resume" (OutputDirError: a run's folder without --resume / --force, or a
    --resume of a run of another config)."""
    output_dir = cfg.OUTPUT_DIR
    if args.resume and not args.eval_only:
        check_same_run(cfg, output_dir)  # before anything in the folder changes
    state = prepare_output_dir(
        output_dir,
        bool(args.resume or args.eval_only),
        bool(getattr(args, "force", False)),
        START_FILES,
    )
    set_interrupted_hint(lambda: resume_hint(output_dir))
    return state


def last_checkpoint(output_dir: str) -> str:
    """The checkpoint Detectron2's --resume continues from ("" if none): the file named in
    OUTPUT_DIR/last_checkpoint."""
    try:
        with open(os.path.join(output_dir, "last_checkpoint")) as f:
            name = f.read().strip()
    except OSError:
        return ""
    path = os.path.join(output_dir, name)
    return path if name and os.path.isfile(path) else ""


def resume_hint(output_dir: str) -> str:
    checkpoint = last_checkpoint(output_dir)
    if checkpoint:
        return f"the last checkpoint is {checkpoint}: rerun the same command with --resume"
    return f"no checkpoint was written in {output_dir} yet: rerun with --force to start over"
