"""detection/train_net.py's output folder: the project's rule (pretrain/common/output_dir.py)
applied to OUTPUT_DIR, and the Ctrl-C line that names the checkpoint to resume from.

--eval-only only adds metrics_eval.json and inference/ to a folder, so it may use a run's
folder like --resume."""
from __future__ import annotations

import os

from pretrain.common.cli import set_interrupted_hint
from pretrain.common.output_dir import prepare_output_dir


def prepare_detection_output(output_dir: str, args) -> str:
    """"fresh" or "resume" (OutputDirError: a run's folder without --resume / --force)."""
    resume = bool(args.resume or args.eval_only)
    state = prepare_output_dir(output_dir, resume, bool(getattr(args, "force", False)))
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
    return (f"no checkpoint was written in {output_dir} yet: rerun with --force to start over")
