"""DATA.VIEW_FAMILY: view pairs that are made together from one image, not as two independent
draws of the augmentation. Both are InfoMin's (Tian et al. 2020) families of views whose shared
information one parameter sets, so a sweep over it traces the paper's reverse-U curve.

  patch_offset  Fig. 3: two square patches of the image whose top-left corners lie exactly
                DATA.PATCH.DISTANCE px apart. The direction is uniform among those that keep
                both patches inside the image, then the pair's place is uniform among those that
                fit. Corners are real numbers, so the patches are sampled bilinearly (a pure
                translation, pixel-exact at whole-pixel corners); each is then resized to
                DATA.CROP_SIZE and put through the view recipe's steps after its crop, on its own.
                An image too small for the distance raises PatchDistanceError (no clamp: a sweep
                must run the distance it names).
  frequency     Appendix B.3: one crop of the recipe (with its steps, run once, so the views
                differ only in band), then the low-pass view, a Gaussian blur of sigma
                DATA.FREQUENCY.SIGMA px, and the high-pass view, crop - low-pass. The residual is
                shown on the ImageNet-mean grey (pixel = mean + residual, in [0, 1] units) and
                normalised like any image, so in the network's input it is residual / std and the
                two views add up to the normalised crop exactly.

Both draw only from torch's RNG and the recipe's (seeded per sample, images.seeded_rngs), so a
resumed run replays them.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from .recipes import IMAGENET_MEAN, IMAGENET_STD, ViewConfigError, ViewRecipe

FAMILIES = ("augment", "patch_offset", "frequency")  # DATA.VIEW_FAMILY
LOW_PASS_VIEWS = ("random", "query")  # DATA.FREQUENCY.LOW_PASS_VIEW
GAUSSIAN_TRUNCATE = 4.0  # kernel radius in sigmas (scipy.ndimage's default): 99.99% of the mass

Box = tuple[float, float, float, float]  # (left, top, right, bottom), PIL's order


class ViewFamilyError(ViewConfigError):
    """A DATA.VIEW_FAMILY / DATA.PATCH / DATA.FREQUENCY value that makes no valid view pair."""


class PatchDistanceError(ValueError):
    """An image too small for two patches of DATA.PATCH.SIZE at DATA.PATCH.DISTANCE."""


def check_view_family(cfg) -> None:
    """Raise ViewFamilyError for an unknown family, or one the configured pipeline cannot make."""
    data = cfg.DATA
    family = data.VIEW_FAMILY
    if family not in FAMILIES:
        raise ViewFamilyError(f"DATA.VIEW_FAMILY {family!r}: expected one of {FAMILIES}")
    if family == "augment":
        return
    if data.PIPELINE != "cpu":
        raise ViewFamilyError(
            f"DATA.VIEW_FAMILY {family} needs DATA.PIPELINE cpu: the GPU "
            "pipeline makes only the augment family's views"
        )
    if data.VIEWS_FROM != "image":
        raise ViewFamilyError(
            f"DATA.VIEW_FAMILY {family} needs DATA.VIEWS_FROM image: its two "
            "views are made together from one image"
        )
    if data.PATCH.SIZE < 0 or data.PATCH.DISTANCE < 0:
        raise ViewFamilyError(
            f"DATA.PATCH.SIZE {data.PATCH.SIZE} / DISTANCE {data.PATCH.DISTANCE}: px, >= 0"
        )
    if data.FREQUENCY.SIGMA < 0:
        raise ViewFamilyError(f"DATA.FREQUENCY.SIGMA {data.FREQUENCY.SIGMA}: px, >= 0")
    if data.FREQUENCY.LOW_PASS_VIEW not in LOW_PASS_VIEWS:
        raise ViewFamilyError(
            f"DATA.FREQUENCY.LOW_PASS_VIEW {data.FREQUENCY.LOW_PASS_VIEW!r}: "
            f"expected one of {LOW_PASS_VIEWS}"
        )


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


def patch_offset_boxes(width: int, height: int, size: int, distance: float) -> tuple[Box, Box]:
    """Two size x size boxes inside a width x height image, corners `distance` apart (see the
    module docstring for how direction and place are drawn)."""
    room_x, room_y = width - size, height - size
    if room_x < 0 or room_y < 0 or distance > math.hypot(room_x, room_y):
        largest = f"{math.hypot(room_x, room_y):.1f}" if min(room_x, room_y) >= 0 else "none"
        raise PatchDistanceError(
            f"image {width}x{height} px too small for two {size} px patches {distance} px apart "
            f"(DATA.PATCH.SIZE / DISTANCE; largest distance: {largest})"
        )
    dx = dy = 0.0
    if distance > 0:
        # |dx| <= room_x and |dy| <= room_y: folded into the first quadrant, the angle lies in
        # [acos(room_x / d), asin(room_y / d)]; the four mirror images are equally likely.
        angle = _uniform(
            math.acos(min(1.0, room_x / distance)), math.asin(min(1.0, room_y / distance))
        )
        sign_x, sign_y = (1 - 2 * torch.randint(0, 2, (2,))).tolist()
        dx, dy = sign_x * distance * math.cos(angle), sign_y * distance * math.sin(angle)
    # Clamped against rounding: cos(acos(r)) * d may exceed r by an ulp.
    left = _uniform(max(0.0, -dx), max(0.0, -dx, room_x - max(0.0, dx)))
    top = _uniform(max(0.0, -dy), max(0.0, -dy, room_y - max(0.0, dy)))
    first = (left, top, left + size, top + size)
    second = (left + dx, top + dy, left + dx + size, top + dy + size)
    return first, second


class PatchOffsetViews:
    """DATA.VIEW_FAMILY patch_offset: (query patch, key patch[, JigSaw patches]) of one image."""

    def __init__(
        self,
        size: int,
        distance: float,
        out_size: int,
        steps: Callable,
        jigsaw: Callable | None = None,
    ):
        self.size, self.distance, self.out_size = size, distance, out_size
        self.steps = steps  # the recipe after its crop: PIL image -> normalised tensor
        self.jigsaw = jigsaw

    def boxes(self, image: Image.Image) -> tuple[Box, Box]:
        return patch_offset_boxes(image.width, image.height, self.size, self.distance)

    def patch(self, image: Image.Image, box: Box) -> Image.Image:
        """The box, bilinearly sampled at its real-valued place, at DATA.CROP_SIZE."""
        patch = image.transform((self.size, self.size), Image.EXTENT, box, Image.BILINEAR)
        if self.size != self.out_size:  # resize antialiases where transform would alias
            patch = patch.resize((self.out_size, self.out_size), Image.BILINEAR)
        return patch

    def __call__(self, image: Image.Image):
        views = tuple(self.steps(self.patch(image, box)) for box in self.boxes(image))
        return views + (self.jigsaw(image),) if self.jigsaw is not None else views


def gaussian_kernel_size(sigma: float, image_side: int) -> int:
    """Odd, GAUSSIAN_TRUNCATE sigmas each side; at most what reflect padding of the image allows
    (a radius below its side), a truncation only for sigmas near the crop's size."""
    radius = min(int(GAUSSIAN_TRUNCATE * sigma + 0.5), image_side - 1)
    return 2 * max(radius, 1) + 1


def low_pass(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """torchvision's Gaussian blur (reflect padding) of a (C, H, W) tensor; sigma 0: the image."""
    if sigma == 0:
        return image.clone()
    kernel = gaussian_kernel_size(sigma, min(image.shape[-2:]))
    return TF.gaussian_blur(image, [kernel, kernel], [sigma, sigma])


class FrequencyViews:
    """DATA.VIEW_FAMILY frequency: the low- and high-pass views of one crop, in the order of
    DATA.FREQUENCY.LOW_PASS_VIEW, [+ JigSaw patches]."""

    def __init__(
        self,
        sigma: float,
        low_pass_view: str,
        crop_and_steps: Callable,
        jigsaw: Callable | None = None,
    ):
        self.sigma = sigma
        self.low_pass_view = low_pass_view
        self.crop_and_steps = crop_and_steps  # PIL image -> tensor in [0, 1]
        self.jigsaw = jigsaw
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def bands(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(crop, low-pass, high-pass), in [0, 1] units; crop = low-pass + high-pass."""
        crop = self.crop_and_steps(image)
        low = low_pass(crop, self.sigma)
        return crop, low, crop - low

    def __call__(self, image: Image.Image):
        _, low, high = self.bands(image)
        low_view = (low - self.mean) / self.std
        high_view = high / self.std  # ((mean + high) - mean) / std: the residual on grey
        low_first = self.low_pass_view == "query" or torch.rand(()).item() < 0.5
        views = (low_view, high_view) if low_first else (high_view, low_view)
        return views + (self.jigsaw(image),) if self.jigsaw is not None else views


def build_family_views(
    cfg, recipe: ViewRecipe, augmentation: T.Compose, jigsaw: Callable | None = None
):
    """The DATA.VIEW_FAMILY pair maker from the recipe and its views.compose: [crop, *PIL steps,
    ToTensor, Normalize]."""
    check_view_family(cfg)
    data = cfg.DATA
    if data.VIEW_FAMILY == "patch_offset":  # the patch replaces the crop
        return PatchOffsetViews(
            data.PATCH.SIZE or recipe.size,
            data.PATCH.DISTANCE,
            recipe.size,
            T.Compose(augmentation.transforms[1:]),
            jigsaw,
        )
    if data.VIEW_FAMILY == "frequency":  # the bands are split, then normalised, in [0, 1] units
        return FrequencyViews(
            data.FREQUENCY.SIGMA,
            data.FREQUENCY.LOW_PASS_VIEW,
            T.Compose(augmentation.transforms[:-1]),
            jigsaw,
        )
    raise ViewFamilyError(f"DATA.VIEW_FAMILY {data.VIEW_FAMILY}: made by views.build_views")
