"""DATA.MULTI_CROP: SwAV's multi-crop (Caron et al. 2020, Sec. 3.2), the views DINO also trains on
(Caron et al. 2021, Sec. 3.1): per image the two large crops every method contrasts (the view
recipe at DATA.CROP_SIZE, DATA.CROP_SCALE) plus NUM_SMALL small crops of the same recipe at
SMALL_SIZE px over SMALL_SCALE of the image area. The sample is
    (large_1, large_2, small_1, ..., small_N),
so the collated batch is 2 + N tensors and the model is called as model(large_1, large_2, *small).
Only methods whose loss reads small crops accept them (models/method.py: views multi-crop); with
NUM_SMALL 0 (the default) nothing here runs and the views are exactly the pair they always were.

Blur: SwAV's and DINO's releases blur every crop with the same sigma range in pixels, so the small
crops keep the large crops' sigma in pixels instead of scaling it down with the crop size (the
recipe's rule for a single view size, recipes.ViewRecipe.blur_sigma_pixels)."""

from __future__ import annotations

from dataclasses import replace

from ..common.errors import ConfigError
from .recipes import ViewRecipe


class MultiCropConfigError(ConfigError):
    """A DATA.MULTI_CROP setting that makes no valid crops, or one the rest of the config cannot
    run with."""


def small_crop_recipe(large: ViewRecipe, size: int, scale: tuple[float, float]) -> ViewRecipe:
    """The large crops' recipe at `size` px over `scale` of the area, its blur in pixels kept."""
    ratio = large.size / size  # blur_sigma is stated at 224 px and scaled by size / 224
    return replace(
        large, size=size, scale=tuple(scale), blur_sigma=tuple(s * ratio for s in large.blur_sigma)
    )


def check_multi_crop(cfg) -> int:
    """The number of small crops (0: off), refused with the settings that cannot make them: the
    GPU pipeline, views from folders, the other view families, CMC's channel split, JigSaw."""
    mc = cfg.DATA.MULTI_CROP
    if mc.NUM_SMALL < 0:
        raise MultiCropConfigError(f"DATA.MULTI_CROP.NUM_SMALL {mc.NUM_SMALL}: expected >= 0")
    if mc.NUM_SMALL == 0:
        return 0
    low, high = tuple(mc.SMALL_SCALE) if len(mc.SMALL_SCALE) == 2 else (-1, -1)
    if not 0 < low <= high <= 1:
        raise MultiCropConfigError(
            f"DATA.MULTI_CROP.SMALL_SCALE {tuple(mc.SMALL_SCALE)}: "
            "expected (low, high) with 0 < low <= high <= 1"
        )
    if mc.SMALL_SIZE < 1:
        raise MultiCropConfigError(f"DATA.MULTI_CROP.SMALL_SIZE {mc.SMALL_SIZE}: expected >= 1")
    for key, value, plain in (
        ("DATA.PIPELINE", cfg.DATA.PIPELINE, "cpu"),
        ("DATA.VIEWS_FROM", cfg.DATA.VIEWS_FROM, "image"),
        ("DATA.VIEW_FAMILY", cfg.DATA.VIEW_FAMILY, "augment"),
        ("MODEL.CMC.ENABLED", cfg.MODEL.CMC.ENABLED, False),
        ("MODEL.JIGSAW.ENABLED", cfg.MODEL.JIGSAW.ENABLED, False),
    ):
        if value != plain:
            raise MultiCropConfigError(
                f"DATA.MULTI_CROP.NUM_SMALL {mc.NUM_SMALL} with {key} "
                f"{value!r}: multi-crop needs {key} {plain!r}"
            )
    return mc.NUM_SMALL


class MultiCropViews:
    """(large_1, large_2, small_1, ..., small_N) of one PIL image: independent draws of `large`
    and `small` (torchvision Composes), in that order, so a seeded sample replays them."""

    def __init__(self, large, small, num_small: int):
        self.large, self.small, self.num_small = large, small, num_small

    def __call__(self, image):
        return (
            self.large(image),
            self.large(image),
            *(self.small(image) for _ in range(self.num_small)),
        )


def build_multi_crop_views(cfg, recipe: ViewRecipe, compose) -> MultiCropViews:
    """The config's multi-crop views from its large-crop `recipe`; `compose` turns a recipe into
    a transform (views.compose)."""
    num_small = check_multi_crop(cfg)
    if not num_small:
        raise MultiCropConfigError("DATA.MULTI_CROP.NUM_SMALL 0: there are no small crops to build")
    mc = cfg.DATA.MULTI_CROP
    small = small_crop_recipe(recipe, mc.SMALL_SIZE, tuple(mc.SMALL_SCALE))
    return MultiCropViews(compose(recipe), compose(small), num_small)
