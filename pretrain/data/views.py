"""The CPU pipeline's views: each ViewRecipe (recipes.py) as a torchvision/timm Compose on PIL
images, plus PIRL's jigsaw patches."""

from __future__ import annotations


import torch
import torchvision.transforms as T
from timm.data.auto_augment import rand_augment_transform

from .inputs import INDEXED_INPUTS, PAIR
from .color_spaces import check_split, describe_split, normalize, split_channels, to_space
from .recipes import (
    FILL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ViewConfigError,
    ViewRecipe,
    blur_kernel_size,
    jigsaw_recipe,
    preset,
    recipe_from_cfg,
)
from .multi_crop import build_multi_crop_views
from .view_families import build_family_views

__all__ = [
    "ChannelSplitViews",
    "ContrastiveViews",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "JigsawPatches",
    "OneView",
    "blur_kernel_size",
    "build_views",
    "compose",
    "jigsaw_augmentation",
    "preset_augmentation",
]


def _maybe_applied(transform, p: float):
    """RandomApply(p), or the bare transform at p = 1 (MoCo v1's jitter: no extra random draw)."""
    return transform if p >= 1.0 else T.RandomApply([transform], p=p)


def _step(recipe: ViewRecipe, name: str):
    if name == "flip":
        return T.RandomHorizontalFlip(recipe.flip_p)
    if name == "jitter":
        return _maybe_applied(T.ColorJitter(*recipe.jitter), recipe.jitter_p)
    if name == "grayscale":
        return T.RandomGrayscale(p=recipe.grayscale_p)
    if name == "blur":
        return T.RandomApply(
            [T.GaussianBlur(recipe.blur_kernel, sigma=recipe.blur_sigma_pixels)], p=recipe.blur_p
        )
    if name == "rand_augment":
        # timm's TranslateXRel/YRel move by translate_pct of the image itself, so the translation
        # is proportional to the crop (PyContrast's translate_const is read by no op it runs).
        return rand_augment_transform(
            recipe.rand_augment_config, {"translate_pct": recipe.translate_pct, "img_mean": FILL}
        )
    raise ViewConfigError(f"unknown view step {name!r}")


def compose(recipe: ViewRecipe, imagenet_normalize: bool = True) -> T.Compose:
    """The recipe on a PIL image, to a float tensor: ImageNet-normalised, or in [0, 1] RGB."""
    return T.Compose(
        [T.RandomResizedCrop(recipe.size, scale=recipe.scale)]
        + [_step(recipe, name) for name in recipe.steps]
        + [T.ToTensor()]
        + ([T.Normalize(IMAGENET_MEAN, IMAGENET_STD)] if imagenet_normalize else [])
    )


def preset_augmentation(name: str, crop_size: int, scale: tuple[float, float]) -> T.Compose:
    """A preset recipe (data/recipes.py: mocov1, mocov2, infomin, flip) as a CPU transform."""
    return compose(preset(name, crop_size, scale))


class JigsawPatches:
    """PIRL's jigsaw input: a (grid*grid, C, patch, patch) stack of patches, one per grid cell,
    each at a random offset inside its cell (row-major order; the model shuffles them)."""

    def __init__(self, grid: int = 3, cell: int = 85, patch: int = 64):
        self.grid, self.cell, self.patch = grid, cell, patch

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        jitter = self.cell - self.patch
        offsets = torch.randint(0, jitter + 1, (self.grid * self.grid, 2)).tolist()
        patches = []
        for i, (dy, dx) in enumerate(offsets):
            top = (i // self.grid) * self.cell + dy
            left = (i % self.grid) * self.cell + dx
            patches.append(image[:, top : top + self.patch, left : left + self.patch])
        return torch.stack(patches)


def jigsaw_augmentation(grid: int = 3, cell: int = 85, patch: int = 64) -> T.Compose:
    """The JigSaw branch's view (recipes.jigsaw_recipe: crop and flip only) cut into a grid of
    patches jittered in their cells."""
    return T.Compose(
        compose(jigsaw_recipe(grid, cell)).transforms + [JigsawPatches(grid, cell, patch)]
    )


class ContrastiveViews:
    """Two independent draws of the same augmentation (query view, key view), plus the jigsaw
    patches when the method has a JigSaw branch."""

    def __init__(self, augmentation, jigsaw=None):
        self.augmentation = augmentation
        self.jigsaw = jigsaw

    def __call__(self, image):
        return self.pair(image, image)

    def pair(self, query_image, key_image):
        """The views of two images of one instance (instances.py); the patches come from the
        query's image."""
        views = (self.augmentation(query_image), self.augmentation(key_image))
        return views + (self.jigsaw(query_image),) if self.jigsaw is not None else views


class OneView:
    """One draw of the augmentation per image, plus the jigsaw patches with a JigSaw branch
    (PIRL): the memory-bank methods' input, whose other side is the bank."""

    def __init__(self, augmentation, jigsaw=None):
        self.augmentation = augmentation
        self.jigsaw = jigsaw

    def __call__(self, image):
        view = (self.augmentation(image),)
        return view + (self.jigsaw(image),) if self.jigsaw is not None else view


class ChannelSplitViews:
    """CMC's two views: ONE draw of the augmentation (so both share crop, flip and any colour
    change), converted to `space`, each channel mapped from its range over the RGB cube to
    [-1, 1] (color_spaces.normalize), then split into the first k1 and the other k2 channels."""

    def __init__(self, augmentation, space: str, split: tuple[int, int]):
        self.augmentation = augmentation
        self.space = space
        self.split = check_split(space, split)

    def __repr__(self) -> str:
        return f"ChannelSplitViews({self.space}: {describe_split(self.space, self.split)})"

    def __call__(self, image):
        converted = normalize(to_space(self.augmentation(image), self.space), self.space)
        return split_channels(converted, self.split)


def build_channel_split_views(cfg):
    """ChannelSplitViews of DATA.COLOR_SPACE, or with "learned" the views of the frozen generator
    DATA.LEARNED_VIEWS (data/learned_views.py)."""
    if not cfg.DATA.COLOR_SPACE:
        raise ViewConfigError(
            "MODEL.CMC.ENABLED needs DATA.COLOR_SPACE (e.g. lab for CMC's L | ab views)"
        )
    from .learned_views import LEARNED_SPACE, LearnedChannelViews, learned_views_of

    if cfg.DATA.COLOR_SPACE == LEARNED_SPACE:  # g reads ImageNet-normalised RGB
        return LearnedChannelViews(compose(recipe_from_cfg(cfg)), learned_views_of(cfg))
    return ChannelSplitViews(
        compose(recipe_from_cfg(cfg), imagenet_normalize=False),
        cfg.DATA.COLOR_SPACE,
        tuple(cfg.DATA.CHANNEL_SPLIT),
    )


def build_views(cfg, inputs: str = PAIR):
    """ContrastiveViews of the recipe, CMC's channel split, the DATA.VIEW_FAMILY pair maker
    (view_families.py), or one view for a method whose `inputs` (data/inputs.py, the method's
    declared views) take a sample's index."""
    if cfg.MODEL.CMC.ENABLED:
        if cfg.DATA.VIEW_FAMILY != "augment":
            raise ViewConfigError(
                f"MODEL.CMC.ENABLED splits one augmented image's channels: "
                f"DATA.VIEW_FAMILY {cfg.DATA.VIEW_FAMILY!r} does not combine"
            )
        return build_channel_split_views(cfg)
    if cfg.DATA.COLOR_SPACE:
        raise ViewConfigError(
            f"DATA.COLOR_SPACE {cfg.DATA.COLOR_SPACE!r} is read by CMC only: "
            "set MODEL.CMC.ENABLED True, or leave it empty"
        )
    jig = cfg.MODEL.JIGSAW
    jigsaw = jigsaw_augmentation(jig.GRID, jig.CELL, jig.PATCH) if jig.ENABLED else None
    recipe = recipe_from_cfg(cfg)
    if inputs in INDEXED_INPUTS:
        return OneView(compose(recipe), jigsaw)
    if cfg.DATA.MULTI_CROP.NUM_SMALL:  # two large crops and N small ones (multi_crop.py)
        return build_multi_crop_views(cfg, recipe, compose)
    if cfg.DATA.VIEW_FAMILY == "augment":
        return ContrastiveViews(compose(recipe), jigsaw)
    return build_family_views(cfg, recipe, compose(recipe), jigsaw)
