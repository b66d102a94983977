"""Settings that train without complaint and yet give wrong numbers, refused before training:

- a class count (MODEL.ROI_HEADS.NUM_CLASSES, or MODEL.RETINANET.NUM_CLASSES) other than a
  training or test dataset's (too few: the last classes are trained as background, or never
  predicted; too many: dead outputs), unless DATASETS.ALLOW_NUM_CLASSES_MISMATCH;
- MODEL.WEIGHTS that leave more than MODEL.BACKBONE.MAX_RANDOM_FRACTION of the backbone's
  tensors (stem, res2-res5) at their random initialisation (e.g. ResNet-18 weights in a
  ResNet-50 model: Detectron2 skips every tensor of another shape with a warning in the log).
"""

from __future__ import annotations

import os
import pickle
import re

from pretrain.common.errors import CheckpointError, ConfigError

from .convert import arch_of_weights, describe_arch
from .verify import backbone_name

_CANONICAL = re.compile(r"^(stem\.conv1\.|res[2-5]\.\d+\.)")
# Caffe2-era names (Detectron2's own ImageNet .pkl files), which its loader maps by heuristics
# this check does not repeat.
_CAFFE2_NAME = re.compile(r"^(res\d_\d+_branch|conv1_w|res_conv1_bn)")


def num_classes_key(cfg) -> str:
    return (
        "MODEL.RETINANET.NUM_CLASSES"
        if cfg.MODEL.META_ARCHITECTURE == "RetinaNet"
        else "MODEL.ROI_HEADS.NUM_CLASSES"
    )


def check_num_classes(cfg) -> None:
    """Every training and test dataset must have as many classes as the model predicts."""
    from detectron2.data import MetadataCatalog

    if cfg.DATASETS.ALLOW_NUM_CLASSES_MISMATCH:
        return
    key = num_classes_key(cfg)
    wanted = (
        cfg.MODEL.RETINANET.NUM_CLASSES if "RETINANET" in key else cfg.MODEL.ROI_HEADS.NUM_CLASSES
    )
    for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
        classes = MetadataCatalog.get(name).get("thing_classes")
        if classes is None or len(classes) == wanted:
            continue
        if not classes:
            raise ConfigError(
                f"dataset {name} has no categories: its annotations name no "
                "class (a COCO json's categories, a VOC set's classes= list)"
            )
        shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
        raise ConfigError(
            f"{key} {wanted}, but dataset {name} has {len(classes)} classes "
            f"({shown}): set {key} {len(classes)}, or "
            "DATASETS.ALLOW_NUM_CLASSES_MISMATCH True to train anyway"
        )


def _read_weights(path: str) -> dict:
    """The tensors of a local weights file: a .pkl ({"model": ...} or flat) or a .pth."""
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                data = pickle.load(f, encoding="latin1")
        else:
            import torch

            data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(
            f"MODEL.WEIGHTS {path}: cannot be read ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"MODEL.WEIGHTS {path}: holds a {type(data).__name__}, not a dict of weights"
        )
    return data


def _canonical_backbone(state: dict) -> dict:
    """{stem.* / res2-5.* name: shape} of the backbone tensors in a file's or model's state,
    whatever the prefix (backbone.bottom_up., backbone., roi_heads., module.)."""
    shapes = {}
    for key, value in state.items():
        key = key[len("module.") :] if key.startswith("module.") else key
        name = (
            key
            if _CANONICAL.match(key) and not key.endswith("num_batches_tracked")
            else backbone_name(key)
        )
        if name is not None and hasattr(value, "shape"):
            shapes[name] = tuple(value.shape)
    return shapes


def model_arch(cfg) -> tuple[int, float]:
    """(depth, width) of the ResNet a Detectron2 config builds: width 1 is RES2_OUT_CHANNELS
    256 (bottleneck) or 64 (basic blocks)."""
    depth = cfg.MODEL.RESNETS.DEPTH
    base = 64 if depth in (18, 34) else 256
    return depth, cfg.MODEL.RESNETS.RES2_OUT_CHANNELS / base


def unloaded_backbone_tensors(model_state: dict, weights: dict) -> tuple[list[str], int]:
    """(the model's backbone tensors the weights do not supply with the same shape, how many
    backbone tensors the model has)."""
    in_model = _canonical_backbone(model_state)
    in_file = _canonical_backbone(weights)
    missing = sorted(name for name, shape in in_model.items() if in_file.get(name) != shape)
    return missing, len(in_model)


def _local_weights(path: str) -> tuple[dict | None, dict | None]:
    """(the file's contents, its tensors by name) of a local weights file; (None, None) without
    one (no file, a URL) or for Caffe2-named files, which the checks skip."""
    if not path or not os.path.isfile(path):
        return None, None
    data = _read_weights(path)
    state = data.get("model", data) if isinstance(data.get("model"), dict) else data
    if any(_CAFFE2_NAME.match(str(k)) for k in state):
        return None, None
    return data, state


def check_backbone_weights(cfg, model) -> None:
    """Refuse MODEL.WEIGHTS that would leave too much of `model`'s backbone random. Skipped
    without weights (a random-init run), for a file that is not local (a URL) and for
    Caffe2-named files."""
    path = cfg.MODEL.WEIGHTS
    data, state = _local_weights(path)
    if state is None:
        return
    model = getattr(model, "module", model)  # DistributedDataParallel
    missing, total = unloaded_backbone_tensors(model.state_dict(), state)
    limit = cfg.MODEL.BACKBONE.MAX_RANDOM_FRACTION
    if not total or len(missing) <= limit * total:
        return
    stored = describe_arch(data.get("arch"), data.get("width")) if data.get("arch") else None
    found = stored or describe_arch(*arch_of_weights(_canonical_backbone(state)))
    depth, width = model_arch(cfg)
    built = (
        f"ResNet-{depth} (width {width:g}; MODEL.RESNETS.DEPTH {depth}, "
        f"RES2_OUT_CHANNELS {cfg.MODEL.RESNETS.RES2_OUT_CHANNELS})"
    )
    raise CheckpointError(
        f"MODEL.WEIGHTS {path} holds {found}, the model builds {built}: {len(missing)} of "
        f"{total} backbone tensors would stay random (first: {missing[0]}); MODEL.BACKBONE."
        f"MAX_RANDOM_FRACTION {limit:g} allows {int(limit * total)}"
    )


def check_eval_weights(cfg, model) -> None:
    """--eval-only scores the model MODEL.WEIGHTS fills: refuse a file that leaves a tensor of
    it at random (another NUM_CLASSES, a backbone-only file), which would evaluate random
    layers. Skipped for a file that is not local (a URL) and for Caffe2-named files."""
    path = cfg.MODEL.WEIGHTS
    _, state = _local_weights(path)
    if state is None:
        return
    model = getattr(model, "module", model)
    wanted = {
        k: tuple(v.shape)
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    given = {k: tuple(getattr(v, "shape", ())) for k, v in state.items()}
    missing = [k for k, shape in wanted.items() if given.get(k) != shape]
    if not missing:
        return
    first, key = missing[0], num_classes_key(cfg)
    found = f"{given[first]} in the file" if first in given else "not in the file"
    classes = (
        cfg.MODEL.RETINANET.NUM_CLASSES if "RETINANET" in key else cfg.MODEL.ROI_HEADS.NUM_CLASSES
    )
    raise CheckpointError(
        f"--eval-only: MODEL.WEIGHTS {path} does not fill {len(missing)} of the model's "
        f"{len(wanted)} tensors (first: {first}, {found}, {wanted[first]} in the model; "
        f"{key} {classes}?): the evaluation would score random layers"
    )


# MODEL.WEIGHTS that Detectron2 fetches or resolves itself, not local paths.
REMOTE_WEIGHTS = ("detectron2://", "catalog://", "http://", "https://", "s3://", "gs://")


def check_weights_path(cfg) -> None:
    """A local MODEL.WEIGHTS that does not exist: one line, not Detectron2's assertion."""
    path = cfg.MODEL.WEIGHTS
    if path and not path.startswith(REMOTE_WEIGHTS) and not os.path.isfile(path):
        raise CheckpointError(
            f"MODEL.WEIGHTS {path}: no such file (tools/convert.py writes one "
            "from a pretraining checkpoint; empty for random init)"
        )
