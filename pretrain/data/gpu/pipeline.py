"""DATA.PIPELINE "gpu": the views of pretrain/data/views.py made on the training device, a whole
batch at a time. The DataLoader workers only read bytes (images.EncodedImages); here the batch is
decoded (decode.py), cropped, and put through the recipe's ops in the CPU recipe's order, every
sample with its own parameters (randomness.py). The same code runs on CPU tensors, which is how the
tests check it on machines without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..views import IMAGENET_MEAN, IMAGENET_STD, blur_kernel_size
from . import color, geometry, randomness
from .decode import decode_batch
from .transfer import constant, to_device
from .rand_augment import rand_augment

# RandAugment's fill for the pixels its affine ops uncover: the ImageNet mean, as in views.py.
FILL = tuple(min(255, round(255 * m)) for m in IMAGENET_MEAN)


@dataclass(frozen=True)
class ViewRecipe:
    """One view: RandomResizedCrop(size, scale), then `steps` in order."""
    size: int
    scale: tuple[float, float]
    steps: tuple[str, ...]
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.5


def recipe_for(name: str, size: int, scale: tuple[float, float]) -> ViewRecipe:
    """The CPU recipes of views.py, step for step."""
    if name == "mocov1":
        return ViewRecipe(size, scale, ("grayscale", "jitter", "flip"), (0.4, 0.4, 0.4, 0.4), 1.0)
    if name == "mocov2":
        return ViewRecipe(size, scale, ("jitter", "grayscale", "blur", "flip"))
    if name == "infomin":
        return ViewRecipe(size, scale, ("flip", "jitter", "blur", "rand_augment", "grayscale"),
                          (0.8, 0.8, 0.8, 0.2))
    raise SystemExit(f"error: DATA.AUGMENTATION {name!r}: expected mocov1, mocov2 or infomin")


def jigsaw_recipe(grid: int, cell: int) -> ViewRecipe:
    return ViewRecipe(grid * cell, (0.6, 1.0), ("flip", "jitter", "grayscale"))


JITTER_OPS = (color.adjust_brightness, color.adjust_contrast, color.adjust_saturation,
              color.adjust_hue)
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


def augment(images: list[torch.Tensor], draws: randomness.Draws, recipe: ViewRecipe
            ) -> torch.Tensor:
    """(N, 3, size, size) uint8: one view of each image."""
    heights = torch.tensor([image.shape[-2] for image in images])
    widths = torch.tensor([image.shape[-1] for image in images])
    boxes = randomness.resized_crop_boxes(draws, heights, widths, recipe.scale)
    view = geometry.resized_crops(images, boxes, recipe.size)
    kernel = blur_kernel_size(recipe.size)
    for step in recipe.steps:
        if step == "flip":
            view = geometry.horizontal_flip(view, draws.bernoulli(0.5))
        elif step == "jitter":
            color_jitter(view, randomness.color_jitter_params(draws, *recipe.jitter,
                                                              recipe.jitter_p))
        elif step == "grayscale":
            _on_subset(view, draws.bernoulli(recipe.grayscale_p),
                       lambda x, which: color.to_grayscale_rgb(x))
        elif step == "blur":
            apply, sigma = draws.bernoulli(recipe.blur_p), draws.uniform(0.1, 2.0)
            _on_subset(view, apply, lambda x, which: color.gaussian_blur(x, kernel, sigma[which]))
        elif step == "rand_augment":
            view = rand_augment(view, randomness.rand_augment_params(draws), FILL)
        else:
            raise ValueError(f"unknown augmentation step {step!r}")
    return view


def normalize(view: torch.Tensor) -> torch.Tensor:
    """ToTensor + Normalize: float32, ImageNet mean/std."""
    return ((view.float() / 255.0 - constant(IMAGENET_MEAN, view.device))
            / constant(IMAGENET_STD, view.device))


class BatchedViews:
    """Decoded bytes in, the method's views out: [query, key] or [query, key, jigsaw patches],
    shaped as the CPU pipeline's collated batch."""

    def __init__(self, cfg, device):
        self.device = torch.device(device)
        self.view = recipe_for(cfg.DATA.AUGMENTATION, cfg.DATA.CROP_SIZE,
                               tuple(cfg.DATA.CROP_SCALE))
        jig = cfg.MODEL.JIGSAW
        self.jigsaw = jigsaw_recipe(jig.GRID, jig.CELL) if jig.ENABLED else None
        self.grid, self.cell, self.patch = jig.GRID, jig.CELL, jig.PATCH

    def __call__(self, encoded: list[torch.Tensor], names: list[str], seeds: list[int]
                 ) -> tuple[list[torch.Tensor], int]:
        images, replaced = decode_batch(encoded, names, self.device)
        uniforms = randomness.sample_uniforms(seeds, 3 if self.jigsaw else 2)
        views = [normalize(augment(images, randomness.Draws(uniforms[:, v]), self.view))
                 for v in range(2)]
        if self.jigsaw:
            draws = randomness.Draws(uniforms[:, 2])
            whole = normalize(augment(images, draws, self.jigsaw))
            # JigsawPatches: each cell's (dy, dx) uniform in [0, cell - patch]
            jitter = self.cell - self.patch + 1
            offsets = (draws.take(2 * self.grid * self.grid) * jitter).floor().long().view(
                len(images), self.grid * self.grid, 2)
            views.append(geometry.jigsaw_patches(whole, offsets, self.grid, self.cell,
                                                 self.patch))
        return views, replaced
