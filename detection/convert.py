"""Backbone weights from the checkpoints people have, written as a Detectron2 `.pkl`.

pretrain/formats.py reads each format (this project's, MoCo v1-v3, SimSiam, SimCLR, BYOL, SwAV,
DINO, InsDis, VISSL, solo-learn, mmselfsup, PyContrast, torchvision) into torchvision naming
(conv1, bn1, layer1..4); one renaming then maps it to Detectron2's (stem, res2..5), the mapping
the reference converters use:
    layerN -> res{N+1}, bnK -> convK.norm, downsample.0 -> shortcut, downsample.1 -> shortcut.norm,
    and `stem.` before the stem's conv1 / bn1.
The same renaming serves every stem (pretrain/models/backbone.py STEMS); the stem a backbone was
trained with is written beside the weights ("stem") where the input tells it, so that Detectron2
configs of another MODEL.RESNETS.STEM_TYPE refuse the file (detection/config.py, verify.py).
"""

from __future__ import annotations

import os
import pickle
import re

import numpy as np
import torch

from pretrain.evaluation.backbone_loading import recorded_stem, stem_from_weights
from pretrain.formats import (
    FORMATS,
    ConversionError,
    detect_format,
    detectron2_resnet,
    load_any,
    read_backbone,
)

__all__ = [
    "FORMATS",
    "ConversionError",
    "arch_of_weights",
    "convert",
    "describe_arch",
    "to_detectron2",
    "to_detectron2_name",
]

# (bottleneck blocks?, blocks in res2..res5) -> depth, the ResNets of He et al. 2016.
_DEPTHS = {
    (False, (2, 2, 2, 2)): 18,
    (False, (3, 4, 6, 3)): 34,
    (True, (3, 4, 6, 3)): 50,
    (True, (3, 4, 23, 3)): 101,
    (True, (3, 8, 36, 3)): 152,
}


def to_detectron2_name(key: str) -> str:
    if not key.startswith("layer"):
        key = "stem." + key
    key = re.sub(r"^layer(\d)", lambda m: f"res{int(m.group(1)) + 1}", key)
    key = re.sub(r"\bbn(\d)\b", r"conv\1.norm", key)
    key = key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
    return key


def to_detectron2(backbone: dict) -> dict:
    return {
        to_detectron2_name(k): v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)
        for k, v in backbone.items()
    }


def arch_of_weights(weights: dict) -> tuple[str | None, float | None]:
    """(torchvision-style arch name, width multiplier) that Detectron2-named backbone weights
    (or their shapes) pin down: the block type and count per stage give the depth, the first
    block's output channels the width, a grouped 3x3 conv the ResNeXt cardinality. None for
    what they do not tell (e.g. a stage missing)."""
    shapes = {k: tuple(getattr(v, "shape", v)) for k, v in weights.items()}
    counts = tuple(
        len({k.split(".")[1] for k in shapes if k.startswith(f"res{s}.")}) for s in range(2, 6)
    )
    bottleneck = "res2.0.conv3.weight" in shapes
    depth = _DEPTHS.get((bottleneck, counts))
    out = shapes.get("res2.0.conv3.weight" if bottleneck else "res2.0.conv2.weight")
    if out is None:
        return None, None
    conv2 = shapes.get("res2.0.conv2.weight")
    groups = conv2[0] // conv2[1] if bottleneck and conv2 and conv2[1] else 1
    if depth is None:
        return None, out[0] / (256 if bottleneck else 64)
    if groups > 1:
        return f"resnext{depth}_{groups}x{conv2[0] // groups}d", 1.0
    return f"resnet{depth}", out[0] / (256 if bottleneck else 64)


def describe_arch(arch: str | None, width: float | None) -> str:
    """'a ResNet-18 backbone (width 1)' for a record of arch_of_weights or MODEL.ARCH / WIDTH."""
    if not arch:
        return "a ResNet backbone of unknown depth" + (f" (width {width:g})" if width else "")
    name = re.sub(r"^resnet(\d+)$", r"ResNet-\1", arch)
    return f"a {name} backbone" + (f" (width {width:g})" if width else "")


def recorded_arch(ckpt) -> tuple[str | None, float | None]:
    """MODEL.ARCH and MODEL.WIDTH of the config a tools/pretrain.py checkpoint stores."""
    from fvcore.common.config import CfgNode

    try:
        model = CfgNode.load_cfg(ckpt["cfg"]).get("MODEL", {})
    except Exception:  # an unreadable stored config: fall back on the weights' shapes
        return None, None
    return model.get("ARCH"), float(model.get("WIDTH", 1))


def write_detectron2_pkl(
    weights: dict,
    path: str,
    author: str,
    check=None,
    stem: str | None = None,
    arch: tuple = (None, None),
) -> None:
    """Atomic: written to a temp file, checked by `check(temp_path)` if given, then renamed; a
    failure anywhere leaves no output. `stem` and `arch` ((name, width)), if known, are recorded
    beside the weights, so that a model of another stem, depth or width can name the mismatch
    (detection/settings_checks.py)."""
    tmp = f"{path}.tmp.{os.getpid()}.pkl"
    data = {"model": weights, "__author__": author, "matching_heuristics": True}
    if stem is not None:
        data["stem"] = stem
    if arch[0] is not None:
        data["arch"], data["width"] = arch
    try:
        with open(tmp, "wb") as f:
            pickle.dump(data, f)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def convert(
    input_path: str,
    output_path: str,
    fmt: str = "auto",
    encoder: str = "query",
    force: bool = False,
    verify_config: str = "",
) -> dict:
    """Convert and write; returns a summary {"format", "kept", "dropped", "stem", "verified"}. With
    `verify_config`, the output is only written if Detectron2 loads all of it exactly."""
    if os.path.exists(output_path) and not force:
        raise ConversionError(f"{output_path}: exists (pass --force to overwrite)")
    ckpt = load_any(input_path)
    found = detect_format(ckpt) if fmt == "auto" else fmt
    if found == "detectron2":
        # A backbone file passes through; a training checkpoint gives its ResNet (stem, res2-5).
        model, not_resnet = detectron2_resnet(ckpt.get("model", ckpt))
        weights = {
            k: v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)
            for k, v in model.items()
            if not k.endswith("num_batches_tracked")
        }
        dropped = sorted(not_resnet + [k for k in model if k.endswith("num_batches_tracked")])
        stem = ckpt.get("stem") if "model" in ckpt else None
        arch = (
            (ckpt.get("arch"), ckpt.get("width"))
            if "model" in ckpt and ckpt.get("arch")
            else arch_of_weights(weights)
        )
    else:
        if found == "pretrain" and any(k.startswith("view1.") for k in ckpt["model"]):
            raise ConversionError(
                "a CMC checkpoint (MODEL.CMC.ENABLED): its encoders' first convs "
                "read colour-space channel groups (e.g. L, ab), not the RGB "
                "a Detectron2 backbone is fed; not convertible"
            )
        backbone, dropped = read_backbone(ckpt, found, encoder)
        if not backbone:
            raise ConversionError(
                f"{found} checkpoint holds no backbone weights for --encoder {encoder}"
            )
        weights = to_detectron2(backbone)
        stem = recorded_stem(ckpt) or stem_from_weights(backbone)
        arch = recorded_arch(ckpt) if found == "pretrain" and "cfg" in ckpt else (None, None)
        if arch[0] is None:
            arch = arch_of_weights(weights)
    not_finite = sorted(
        k
        for k, v in weights.items()
        if np.issubdtype(np.asarray(v).dtype, np.floating) and not np.isfinite(v).all()
    )
    if not_finite:
        raise ConversionError(
            f"{input_path}: {len(not_finite)} tensors hold NaN or infinite "
            f"values (first: {not_finite[0]}); the run that wrote it diverged, "
            "convert an earlier checkpoint"
        )
    verified = []

    def check(path: str) -> None:
        from .verify import VerificationError, verify_weights

        try:
            verified.append(verify_weights(path, verify_config))
        except VerificationError as err:
            raise ConversionError(f"--verify {verify_config}: {err}") from None

    write_detectron2_pkl(
        weights,
        output_path,
        author=f"infomin-det convert ({found}, {encoder})",
        check=check if verify_config else None,
        stem=stem,
        arch=arch,
    )
    return {
        "format": found,
        "kept": sorted(weights),
        "dropped": dropped,
        "stem": stem,
        "arch": arch,
        "verified": verified[0] if verified else None,
    }
