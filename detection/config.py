"""Detectron2 config keys this project adds, and the rules that act on them."""
from __future__ import annotations

# Norm names whose layers Detectron2 builds with torch's SyncBatchNorm (GPU only) and their
# all-reduce twin that also runs through gloo on CPU processes.
_SYNC_NORM_KEYS = ("MODEL.RESNETS.NORM", "MODEL.FPN.NORM", "MODEL.ROI_BOX_HEAD.NORM",
                   "MODEL.ROI_MASK_HEAD.NORM")


def load_detection_cfg(config_file: str, opts=()):
    """Detectron2's defaults + this project's keys <- config file (with _BASE_) <- KEY VALUE
    overrides. A missing file or an unknown key is a one-line error naming the file."""
    import os

    from detectron2.config import get_cfg

    if not os.path.isfile(config_file):
        raise SystemExit(f"error: config file {config_file}: no such file")
    cfg = get_cfg()
    add_project_config(cfg)
    try:
        cfg.merge_from_file(config_file)
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError, ValueError) as err:  # yacs reports unknown keys with either
        raise SystemExit(f"error: {config_file}: {err.args[0]}") from None
    return cfg


def add_project_config(cfg) -> None:
    # One-line dataset specs registered before training (see detection/datasets.py).
    cfg.DATASETS.REGISTER = []
    # The linear scaling rule in one number, for fewer GPUs or less memory per GPU: the global
    # batch (IMS_PER_BATCH) and the learning rate are multiplied by it, and the schedule
    # (MAX_ITER, STEPS, WARMUP_ITERS, CHECKPOINT_PERIOD, TEST.EVAL_PERIOD) divided by it, so the
    # number of epochs stays that of the published recipe. E.g. 0.5 on 4 GPUs with an 8-GPU config.
    cfg.SOLVER.BATCH_SCALE = 1.0


def apply_batch_scale(cfg) -> None:
    scale = cfg.SOLVER.BATCH_SCALE
    if scale == 1.0:
        return
    images = cfg.SOLVER.IMS_PER_BATCH * scale
    if scale <= 0 or images < 1 or abs(images - round(images)) > 1e-6:
        raise SystemExit(f"error: SOLVER.BATCH_SCALE {scale} does not give a whole batch from "
                         f"IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH}")
    solver = cfg.SOLVER
    solver.IMS_PER_BATCH = int(round(images))
    solver.BASE_LR *= scale
    solver.MAX_ITER = int(round(solver.MAX_ITER / scale))
    solver.STEPS = tuple(int(round(s / scale)) for s in solver.STEPS)
    solver.WARMUP_ITERS = int(round(solver.WARMUP_ITERS / scale))
    solver.CHECKPOINT_PERIOD = int(round(solver.CHECKPOINT_PERIOD / scale))
    cfg.TEST.EVAL_PERIOD = int(round(cfg.TEST.EVAL_PERIOD / scale))
    solver.BATCH_SCALE = 1.0  # applied; a saved config.yaml must not apply it twice


def sync_norms_for_cpu_processes(cfg) -> list[str]:
    """torch's SyncBatchNorm refuses CPU tensors; Detectron2's NaiveSyncBatchNorm all-reduces
    through any backend. Swap it in for multi-process CPU runs; returns the keys changed."""
    changed = []
    for key in _SYNC_NORM_KEYS:
        node, leaf = cfg, key.split(".")
        for part in leaf[:-1]:
            node = node[part]
        if node[leaf[-1]] == "SyncBN":
            node[leaf[-1]] = "naiveSyncBN"
            changed.append(key)
    return changed
