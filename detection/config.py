"""Detectron2 config keys this project adds, and the rules that act on them."""

from __future__ import annotations

import os
import pickle

from pretrain.common.errors import FILE_ERRORS, ConfigError, file_error_text
from pretrain.common.output_dir import derived_output_dir

# Norm names whose layers Detectron2 builds with torch's SyncBatchNorm (GPU only) and their
# all-reduce twin that also runs through gloo on CPU processes.
_SYNC_NORM_KEYS = (
    "MODEL.RESNETS.NORM",
    "MODEL.FPN.NORM",
    "MODEL.ROI_BOX_HEAD.NORM",
    "MODEL.ROI_MASK_HEAD.NORM",
)
# The backbones of detection/modeling.py that build MODEL.RESNETS.STEM_TYPE; the stock ones
# always build the ImageNet stem.
STEM_TYPE_BACKBONES = (
    "build_resnet_backbone_with_stem_type",
    "build_resnet_fpn_backbone_with_stem_type",
)


class StemConfigError(ConfigError):
    """MODEL.RESNETS.STEM_TYPE cannot be built, or differs from the stem of MODEL.WEIGHTS."""


def load_detection_cfg(config_file: str, opts=()):
    """Detectron2's defaults + this project's keys <- config file (with _BASE_) <- KEY VALUE
    overrides. A missing file, an unknown key or a stem that the backbone or the weights do not
    fit is a one-line error naming the file."""
    from detectron2.config import get_cfg

    if not os.path.isfile(config_file):
        raise ConfigError(f"config file {config_file}: no such file")
    cfg = get_cfg()
    add_project_config(cfg)
    try:
        cfg.merge_from_file(config_file)
    except FILE_ERRORS as err:  # yacs reports unknown keys with KeyError or AssertionError
        raise ConfigError(f"{config_file}: {file_error_text(err)}") from None
    if len(opts) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs, got {list(opts)}")
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError, ValueError) as err:  # a key given on the command line
        raise ConfigError(f"command-line override: {err.args[0]}") from None
    try:
        check_stem_type(cfg)
    except (KeyError, AssertionError, ValueError) as err:
        raise ConfigError(f"{config_file}: {err.args[0]}") from None
    if not cfg.OUTPUT_DIR:
        cfg.OUTPUT_DIR = derived_output_dir("detection", config_file, cfg.SEED)
    return cfg


def add_project_config(cfg) -> None:
    # "" (instead of Detectron2's "./output", which every run shared): output/detection/<config
    # name>_seed<SEED>, no seed part for SEED -1 (pretrain/common/output_dir.derived_output_dir).
    cfg.OUTPUT_DIR = ""
    # One-line dataset specs registered before training (see detection/datasets.py).
    cfg.DATASETS.REGISTER = []
    # The check of the train and test images before training (detection/data_checks.py):
    # "header" opens each image (missing, unreadable, cut short: no JPEG / PNG end marker, wrong
    # size, boxes outside it); "decode" also decodes it, finding damage inside a file
    # (train_net.py --check-data); "off".
    cfg.DATASETS.CHECK = "header"
    # A bad image: "skip" leaves it out and lists it in OUTPUT_DIR/bad_images.txt; "error" stops
    # with one line naming it.
    cfg.DATASETS.ON_BAD_IMAGE = "skip"
    # The linear scaling rule in one number, for fewer GPUs or less memory per GPU: the global
    # batch (IMS_PER_BATCH) and the learning rate are multiplied by it, and the schedule
    # (MAX_ITER, STEPS, WARMUP_ITERS, CHECKPOINT_PERIOD, TEST.EVAL_PERIOD) divided by it, so the
    # number of epochs stays that of the published recipe. E.g. 0.5 on 4 GPUs with an 8-GPU config.
    cfg.SOLVER.BATCH_SCALE = 1.0
    # bf16 autocast of the model's training forward, and channels-last, on a CPU that computes
    # bf16 natively (AMX / AVX512-BF16; pretrain/common/cpu_bf16.py); fp32 with a note on others
    # and on a GPU (where Detectron2's SOLVER.AMP.ENABLED is the switch). Evaluation stays fp32.
    cfg.SOLVER.CPU_AMP = False
    # The layers before res2, as pretraining's MODEL.STEM (pretrain/models/backbone.py STEMS):
    # "imagenet" (stock), "cifar" (3x3/1 conv: res2..res5 at strides 1..8), "tinyimagenet" (3x3/1
    # conv + max-pool: strides 2..16). Other than "imagenet" it needs a BACKBONE.NAME of
    # STEM_TYPE_BACKBONES.
    cfg.MODEL.RESNETS.STEM_TYPE = "imagenet"
    # Training refuses a model whose class count (MODEL.ROI_HEADS / RETINANET.NUM_CLASSES) differs
    # from a training dataset's (detection/settings_checks.py); True allows it.
    cfg.DATASETS.ALLOW_NUM_CLASSES_MISMATCH = False
    # The share of the backbone's tensors (stem, res2-res5) that MODEL.WEIGHTS may leave at their
    # random initialisation (another depth, width or stem); more is refused before training. 1.0
    # allows any.
    cfg.MODEL.BACKBONE.MAX_RANDOM_FRACTION = 0.0


def weights_stem(path: str) -> str | None:
    """The stem tools/convert.py recorded in a Detectron2 .pkl (None: not recorded, or no such
    local .pkl)."""
    if not (path.endswith(".pkl") and os.path.isfile(path)):
        return None
    with open(path, "rb") as f:
        data = pickle.load(f, encoding="latin1")
    return data.get("stem") if isinstance(data, dict) else None


def check_stem_type(cfg) -> None:
    """The stem must be one the backbone builds, and the one MODEL.WEIGHTS was trained with:
    Detectron2 skips a weight whose shape differs with only a warning (a 3x3 stem into a 7x7 one),
    and cifar and tinyimagenet weights have the same shapes."""
    from pretrain.models.backbone import STEMS

    stem, name = cfg.MODEL.RESNETS.STEM_TYPE, cfg.MODEL.BACKBONE.NAME
    if stem not in STEMS:
        raise StemConfigError(f"MODEL.RESNETS.STEM_TYPE {stem!r} is not one of {sorted(STEMS)}")
    if stem != "imagenet" and name not in STEM_TYPE_BACKBONES:
        raise StemConfigError(
            f"MODEL.RESNETS.STEM_TYPE {stem!r} needs MODEL.BACKBONE.NAME one of "
            f"{list(STEM_TYPE_BACKBONES)}; {name} builds the ImageNet stem"
        )
    trained = weights_stem(cfg.MODEL.WEIGHTS)
    if trained is not None and trained != stem:
        raise StemConfigError(
            f"MODEL.WEIGHTS {cfg.MODEL.WEIGHTS} was pretrained with stem "
            f"{trained!r}, the model builds MODEL.RESNETS.STEM_TYPE {stem!r}"
        )


def apply_batch_scale(cfg) -> None:
    scale = cfg.SOLVER.BATCH_SCALE
    if scale == 1.0:
        return
    images = cfg.SOLVER.IMS_PER_BATCH * scale
    if scale <= 0 or images < 1 or abs(images - round(images)) > 1e-6:
        raise ConfigError(
            f"SOLVER.BATCH_SCALE {scale} does not give a whole batch from "
            f"IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH}"
        )
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
