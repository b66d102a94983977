"""timm's RandAugment (the recipe's, InfoMin's "rand-n2-m10-mstd0.5" by default; the
non-increasing op set) on a batch: each sample runs its own ops at its own magnitudes. Samples are
grouped by the op they drew, so every op runs once per layer on the samples that chose it."""

from __future__ import annotations

import torch

from . import color, geometry
from .randomness import LEVEL_DENOM, RAND_AUGMENT_OPS
from .transfer import to_device


def _signed(level: torch.Tensor, negate: torch.Tensor) -> torch.Tensor:
    return torch.where(negate, -level, level)


def _geometric(image, matrices, bicubic, fill):
    """Each sample warped with its own matrix and its own filter (bilinear or bicubic)."""
    out = torch.empty_like(image)
    for use_bicubic in (False, True):
        which = (bicubic == use_bicubic).nonzero().flatten()
        if len(which):
            rows = to_device(which, image.device)
            out[rows] = geometry.warp_affine(image[rows], matrices[which], use_bicubic, fill)
    return out


def apply_op(
    name: str,
    image: torch.Tensor,
    magnitude: torch.Tensor,
    negate: torch.Tensor,
    bicubic: torch.Tensor,
    fill: tuple[int, int, int],
    translate_pct: float = 0.45,
) -> torch.Tensor:
    """One RandAugment op on a batch, with timm's magnitude -> argument rules (all in [0, 1] of
    the level: magnitude / 10)."""
    level = magnitude.double() / LEVEL_DENOM
    h, w = image.shape[-2:]
    if name == "AutoContrast":
        return color.autocontrast(image)
    if name == "Equalize":
        return color.equalize(image)
    if name == "Invert":
        return color.invert(image)
    if name == "Posterize":
        return color.posterize(image, (level * 4).long())
    if name == "Solarize":
        return color.solarize(image, (level * 256).long().clamp(max=256))
    if name == "SolarizeAdd":
        return color.solarize_add(image, (level * 110).long().clamp(max=128))
    enhance = level * 1.8 + 0.1
    if name == "Color":
        return color.adjust_saturation(image, enhance)
    if name == "Contrast":
        return color.adjust_contrast(image, enhance)
    if name == "Brightness":
        return color.adjust_brightness(image, enhance)
    if name == "Sharpness":
        return color.adjust_sharpness(image, enhance)
    if name == "Rotate":
        matrices = geometry.rotation_matrices(_signed(level * 30.0, negate), h, w)
    elif name in ("ShearX", "ShearY"):
        matrices = geometry.shear_matrices(_signed(level * 0.3, negate), name == "ShearX")
    elif name == "TranslateXRel":
        matrices = geometry.translate_matrices(_signed(level * translate_pct, negate) * w, True)
    elif name == "TranslateYRel":
        matrices = geometry.translate_matrices(_signed(level * translate_pct, negate) * h, False)
    else:
        raise ValueError(f"unknown RandAugment op {name!r}")
    return _geometric(image, matrices, bicubic, fill)


def rand_augment(
    image: torch.Tensor, layers: list[dict], fill: tuple[int, int, int], translate_pct: float = 0.45
) -> torch.Tensor:
    """`layers` from randomness.rand_augment_params; returns a new uint8 batch. The translations
    move by up to `translate_pct` of the image, as timm's TranslateXRel/YRel."""
    image = image.clone()
    for layer in layers:
        for index, name in enumerate(RAND_AUGMENT_OPS):
            which = ((layer["op"] == index) & layer["apply"]).nonzero().flatten()
            if len(which) == 0:
                continue
            rows = to_device(which, image.device)
            image[rows] = apply_op(
                name,
                image[rows],
                layer["magnitude"][which],
                layer["negate"][which],
                layer["bicubic"][which],
                fill,
                translate_pct,
            )
    return image
