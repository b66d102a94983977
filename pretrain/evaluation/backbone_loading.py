"""A backbone to evaluate: from any checkpoint format pretrain.formats reads, or freshly
initialised, with the stem it was trained with."""

from __future__ import annotations

from typing import NamedTuple

import torch.nn as nn
from fvcore.common.config import CfgNode

from ..formats import ConversionError, detect_format, load_any, read_backbone
from ..models.backbone import STEMS, build_backbone, stem_spec


DEFAULT_ARCH = "resnet50"  # where neither the request nor the checkpoint names one


class BackboneLoadError(ValueError):
    """The checkpoint cannot be read, or does not fit the backbone asked for; names the file."""


class LoadedBackbone(NamedTuple):
    trunk: nn.Module
    dim: int  # of the pooled features
    stem: str  # the one rebuilt
    arch: str  # the one rebuilt
    crop: int | None = None  # DATA.CROP_SIZE the checkpoint's pretraining used, where recorded


def recorded_section(ckpt, section: str) -> dict | None:
    """A section of the config a tools/pretrain.py checkpoint stores; None for every other
    format, which records no config."""
    if not isinstance(ckpt, dict) or "cfg" not in ckpt:
        return None
    try:
        if detect_format(ckpt) != "pretrain":
            return None
    except ConversionError:
        return None
    return CfgNode.load_cfg(ckpt["cfg"]).get(section, {})


def recorded_model(ckpt) -> dict | None:
    """The MODEL section of the config a tools/pretrain.py checkpoint stores, or None."""
    return recorded_section(ckpt, "MODEL")


def recorded_crop(ckpt) -> int | None:
    """DATA.CROP_SIZE of the config a tools/pretrain.py checkpoint stores, or None."""
    crop = (recorded_section(ckpt, "DATA") or {}).get("CROP_SIZE")
    return int(crop) if crop else None


def recorded_stem(ckpt) -> str | None:
    """MODEL.STEM of the config a tools/pretrain.py checkpoint stores ("imagenet" for those written
    before the key existed); None for every other format, which records no stem."""
    model = recorded_model(ckpt)
    return None if model is None else model.get("STEM", "imagenet")


def stem_from_weights(state: dict) -> str | None:
    """The stem a torchvision-named backbone's conv1 pins down: only the ImageNet stem has a 7x7
    conv1; a 3x3 one is cifar's or tinyimagenet's (they differ in a parameter-free max-pool)."""
    conv1 = state.get("conv1.weight")
    if conv1 is None:
        return None
    matches = [name for name, spec in STEMS.items() if spec.kernel == conv1.shape[-1]]
    return matches[0] if len(matches) == 1 else None


def resolve_stem(checkpoint: str, ckpt, state: dict, requested: str = "") -> str:
    """The stem to rebuild: the one asked for (""= none), the one the checkpoint records or its
    weights pin down; a disagreement or an ambiguous 3x3 conv1 without a request is an error."""
    known = recorded_stem(ckpt) or stem_from_weights(state)
    if requested:
        stem_spec(requested)
        if known and requested != known:
            raise BackboneLoadError(
                f"checkpoint {checkpoint} was trained with stem {known!r}, "
                f"not {requested!r}: leave the stem unset to use its own"
            )
        return requested
    if known:
        return known
    if "conv1.weight" in state:
        raise BackboneLoadError(
            f"checkpoint {checkpoint}: a {tuple(state['conv1.weight'].shape)} "
            "conv1 records no stem: name the one it was trained with "
            f"({', '.join(n for n in STEMS if n != 'imagenet')})"
        )
    return "imagenet"


def load_backbone(
    arch: str, checkpoint: str = "", encoder: str = "query", width: int = 1, stem: str = ""
) -> LoadedBackbone:
    """Every backbone tensor must load (strict). `arch` "" takes the checkpoint's own (with its
    width) where its config records it, else resnet50; `stem` "" takes the checkpoint's own
    (recorded in a pretraining checkpoint's config, or a 7x7 conv1), else the ImageNet stem for a
    random backbone."""
    if not checkpoint:
        arch, stem = arch or DEFAULT_ARCH, stem or "imagenet"
        return LoadedBackbone(*build_backbone(arch, width, stem), stem, arch)
    try:
        ckpt = load_any(checkpoint)
        state, _ = read_backbone(ckpt, detect_format(ckpt), encoder)
    except ConversionError as err:
        raise BackboneLoadError(f"checkpoint {checkpoint}: {err}") from None
    if not arch:  # a pretraining checkpoint names its own; a torchvision-style one does not
        model = recorded_model(ckpt) or {}
        arch, width = model.get("ARCH", DEFAULT_ARCH), model.get("WIDTH", width)
    stem = resolve_stem(checkpoint, ckpt, state, stem)
    trunk, dim = build_backbone(arch, width, stem)
    try:
        missing, unexpected = trunk.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a shape mismatch: another depth or width
        raise BackboneLoadError(
            f"checkpoint {checkpoint} does not fit MODEL.ARCH {arch} "
            f"(WIDTH {width}): {str(err).splitlines()[1].strip()}"
        ) from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise BackboneLoadError(
            f"checkpoint {checkpoint} does not fit MODEL.ARCH {arch}: "
            f"missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    return LoadedBackbone(trunk, dim, stem, arch, recorded_crop(ckpt))
