"""DATA.PIPELINE "gpu": the views of pretrain/data/recipes.py, which the CPU pipeline (views.py)
runs too, made on the training device a whole batch at a time. The DataLoader workers only read
bytes (images.EncodedImages); here the batch is decoded (decode.py), cropped, and put through the
recipe's steps in order, every sample with its own parameters (randomness.py). The same code runs
on CPU tensors, which is how the tests check it on machines without a GPU.
"""

from __future__ import annotations

import torch

from ..recipes import FILL, IMAGENET_MEAN, IMAGENET_STD, ViewRecipe, jigsaw_recipe, recipe_from_cfg
from . import color, geometry, randomness
from .decode import decode_batch
from .transfer import constant, to_device
from .rand_augment import rand_augment


JITTER_OPS = (
    color.adjust_brightness,
    color.adjust_contrast,
    color.adjust_saturation,
    color.adjust_hue,
)
JITTER_KEYS = ("brightness", "contrast", "saturation", "hue")


def _on_subset(image: torch.Tensor, chosen: torch.Tensor, op) -> None:
    """image[chosen] = op(image[chosen], which) in place; `chosen` is a CPU bool mask."""
    which = chosen.nonzero().flatten()
    if len(which):
        rows = to_device(which, image.device)
        image[rows] = op(image[rows], which)


def color_jitter(image: torch.Tensor, params: dict) -> None:
    """torchvision's ColorJitter with its per-sample random order: at each of the 4 positions,
    each adjustment runs on the samples that placed it there."""
    for position in range(4):
        for index, (op, key) in enumerate(zip(JITTER_OPS, JITTER_KEYS)):
            chosen = params["apply"] & (params["order"][:, position] == index)
            _on_subset(image, chosen, lambda x, which: op(x, params[key][which]))


def _flip(view: torch.Tensor, draws: randomness.Draws, recipe: ViewRecipe) -> torch.Tensor:
    return geometry.horizontal_flip(view, draws.bernoulli(recipe.flip_p))


def _jitter(view: torch.Tensor, draws: randomness.Draws, recipe: ViewRecipe) -> torch.Tensor:
    color_jitter(view, randomness.color_jitter_params(draws, *recipe.jitter, recipe.jitter_p))
    return view


def _grayscale(view: torch.Tensor, draws: randomness.Draws, recipe: ViewRecipe) -> torch.Tensor:
    _on_subset(
        view, draws.bernoulli(recipe.grayscale_p), lambda x, which: color.to_grayscale_rgb(x)
    )
    return view


def _blur(view: torch.Tensor, draws: randomness.Draws, recipe: ViewRecipe) -> torch.Tensor:
    params = randomness.blur_params(draws, recipe.blur_p, recipe.blur_sigma_pixels)
    _on_subset(
        view,
        params["apply"],
        lambda x, which: color.gaussian_blur(x, recipe.blur_kernel, params["sigma"][which]),
    )
    return view


def _rand_augment(view: torch.Tensor, draws: randomness.Draws, recipe: ViewRecipe) -> torch.Tensor:
    layers = randomness.rand_augment_params(
        draws,
        recipe.rand_augment_n,
        recipe.rand_augment_m,
        recipe.rand_augment_mstd,
        recipe.rand_augment_p,
    )
    return rand_augment(view, layers, FILL, recipe.translate_pct)


# recipes.STEPS, each a function (view, draws, recipe) -> view, in place where it can be
STEP_OPS = {
    "flip": _flip,
    "jitter": _jitter,
    "grayscale": _grayscale,
    "blur": _blur,
    "rand_augment": _rand_augment,
}


def augment(
    images: list[torch.Tensor], draws: randomness.Draws, recipe: ViewRecipe
) -> torch.Tensor:
    """(N, 3, size, size) uint8: one view of each image."""
    heights = torch.tensor([image.shape[-2] for image in images])
    widths = torch.tensor([image.shape[-1] for image in images])
    boxes = randomness.resized_crop_boxes(draws, heights, widths, recipe.scale)
    view = geometry.resized_crops(images, boxes, recipe.size)
    for step in recipe.steps:
        view = STEP_OPS[step](view, draws, recipe)
    return view


def normalize(view: torch.Tensor) -> torch.Tensor:
    """ToTensor + Normalize: float32, ImageNet mean/std."""
    return (view.float() / 255.0 - constant(IMAGENET_MEAN, view.device)) / constant(
        IMAGENET_STD, view.device
    )


class BatchedViews:
    """Decoded bytes in, the method's views out: [query, key] or [query, key, jigsaw patches],
    shaped as the CPU pipeline's collated batch."""

    def __init__(self, cfg, device):
        self.device = torch.device(device)
        self.view = recipe_from_cfg(cfg)
        jig = cfg.MODEL.JIGSAW
        self.jigsaw = jigsaw_recipe(jig.GRID, jig.CELL) if jig.ENABLED else None
        self.grid, self.cell, self.patch = jig.GRID, jig.CELL, jig.PATCH

    def __call__(
        self, encoded: list[torch.Tensor], names: list[str], seeds: list[int]
    ) -> tuple[list[torch.Tensor], list[tuple[str, str]]]:
        """The views of the batch, and the (name, reason) of the images that could not be
        decoded (replaced by others of the batch)."""
        images, replaced = decode_batch(encoded, names, self.device)
        uniforms = randomness.sample_uniforms(seeds, 3 if self.jigsaw else 2)
        views = [
            normalize(augment(images, randomness.Draws(uniforms[:, v]), self.view))
            for v in range(2)
        ]
        if self.jigsaw:
            draws = randomness.Draws(uniforms[:, 2])
            whole = normalize(augment(images, draws, self.jigsaw))
            # JigsawPatches: each cell's (dy, dx) uniform in [0, cell - patch]
            jitter = self.cell - self.patch + 1
            offsets = (
                (draws.take(2 * self.grid * self.grid) * jitter)
                .floor()
                .long()
                .view(len(images), self.grid * self.grid, 2)
            )
            views.append(geometry.jigsaw_patches(whole, offsets, self.grid, self.cell, self.patch))
        return views, replaced
