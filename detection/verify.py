"""Prove that Detectron2 loads every backbone tensor of a converted file, unchanged.

Builds the model of a Detectron2 config, loads the file through DetectionCheckpointer (the path
train_net takes, suffix matching included), and compares: every backbone parameter and BN buffer
of the model must come from the file with the file's value, and every tensor of the file must land
in the model. The backbone sits under `backbone.bottom_up.` in FPN models and under `backbone.`
(stem, res2-res4) plus `roi_heads.res5.` in C4 models; the extra norm after a C4 head's res5 is a
new layer, not part of the backbone. A file that records the stem it was trained with
(tools/convert.py) must meet a config of that MODEL.RESNETS.STEM_TYPE: cifar and tinyimagenet
weights have the same shapes, so only the record tells them apart.
"""

from __future__ import annotations

import logging
import pickle
import re

import numpy as np

import detection  # noqa: F401  (before detectron2: supplies missing compiled ops)
import detection.modeling  # noqa: F401  (registers Res5ROIHeadsExtraNorm, the stem backbones)

_BACKBONE_NAME = re.compile(r"^(stem\.conv1\.|res[2-5]\.\d+\.)")


class VerificationError(Exception):
    """The file does not load completely and exactly into the config's model."""


def backbone_name(model_key: str) -> str | None:
    """The Detectron2 backbone name (stem.*, res2.* ... res5.*) of a model tensor, or None."""
    for prefix in ("backbone.bottom_up.", "backbone.", "roi_heads."):
        if model_key.startswith(prefix):
            rest = model_key[len(prefix) :]
            if _BACKBONE_NAME.match(rest) and not rest.endswith("num_batches_tracked"):
                return rest
    return None


def build_cfg(config_file: str, opts=(), keep_weights: bool = False):
    """The config's Detectron2 cfg on CPU (without its MODEL.WEIGHTS unless `keep_weights`)."""
    from .config import load_detection_cfg

    cfg = load_detection_cfg(config_file, opts)
    cfg.MODEL.DEVICE = "cpu"
    if not keep_weights:
        cfg.MODEL.WEIGHTS = ""
    return cfg


def verify_weights(weights_file: str, config_file: str, opts=()) -> int:
    """Returns the number of backbone tensors checked; raises VerificationError naming problems."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    cfg = build_cfg(config_file, opts)
    model = build_model(cfg)
    for name in ("fvcore.common.checkpoint", "detectron2.checkpoint.c2_model_loading"):
        logging.getLogger(name).setLevel(logging.ERROR)  # the verdict below says it all
    DetectionCheckpointer(model).load(weights_file)
    with open(weights_file, "rb") as f:
        data = pickle.load(f, encoding="latin1")
    source = data["model"]
    trained_stem, built_stem = data.get("stem"), cfg.MODEL.RESNETS.STEM_TYPE
    if trained_stem is not None and trained_stem != built_stem:
        raise VerificationError(
            f"the file's backbone was trained with stem {trained_stem!r}, "
            f"the model of {config_file} builds {built_stem!r} "
            "(MODEL.RESNETS.STEM_TYPE)"
        )

    in_model = {}
    for key, tensor in model.state_dict().items():
        name = backbone_name(key)
        if name is not None:
            in_model[name] = (key, tensor.detach().cpu().numpy())
    problems = []  # the most telling first: shapes, then values, then names
    for name in sorted(set(source) - set(in_model)):
        problems.append(f"{name} is in the file but the model of {config_file} has no such tensor")
    for name in sorted(set(in_model) - set(source)):
        problems.append(f"{in_model[name][0]} of the model is not in the file")
    for name in sorted(set(source) & set(in_model)):
        key, loaded = in_model[name]
        expected = np.asarray(source[name])
        if loaded.shape != expected.shape:
            problems.append(
                f"{name}: shape {expected.shape} in the file, {loaded.shape} in the "
                "model (a depth or width that does not match the config?)"
            )
        elif not np.array_equal(loaded, expected.astype(loaded.dtype)):
            problems.append(f"{key} does not equal {name} of the file after loading")
    problems.sort(key=lambda p: 0 if ": shape" in p else 1 if "does not equal" in p else 2)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise VerificationError(f"{len(problems)} problems: " + "; ".join(problems[:3]) + more)
    return len(in_model)
