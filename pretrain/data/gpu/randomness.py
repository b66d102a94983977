"""Per-sample random parameters for the batched augmentation, drawn on the CPU.

Each sample gets its own stream of uniforms, seeded by (run seed, epoch, image index) exactly like
the CPU pipeline's per-sample seed (pretrain/data/images.py), so a view depends neither on which
other images share its batch nor on where a resumed run restarted. Every op takes a fixed number of
columns whether or not it fires, so one op's outcome never shifts another op's randomness.

The samplers reproduce the distributions of the reference transforms the CPU pipeline runs:
torchvision's RandomResizedCrop / ColorJitter / GaussianBlur / RandomApply / RandomGrayscale /
RandomHorizontalFlip and timm's RandAugment ("rand-n2-m10-mstd0.5": two of its 15 ops drawn with
replacement, each applied with p 0.5 at magnitude N(10, 0.5) clipped to [0, 10]).
"""

from __future__ import annotations

import math

import torch

UNIFORMS_PER_VIEW = 96


def sample_uniforms(seeds: list[int], views: int) -> torch.Tensor:
    """(N, views, UNIFORMS_PER_VIEW) float64 uniforms in [0, 1), one generator per sample."""
    rows = [
        torch.rand(
            views * UNIFORMS_PER_VIEW,
            dtype=torch.float64,
            generator=torch.Generator().manual_seed(int(seed)),
        )
        for seed in seeds
    ]
    return torch.stack(rows).view(len(seeds), views, UNIFORMS_PER_VIEW)


class Draws:
    """Hands out the columns of one view's (N, UNIFORMS_PER_VIEW) uniforms in order."""

    def __init__(self, uniforms: torch.Tensor):
        self.uniforms = uniforms
        self.used = 0

    def take(self, count: int = 1) -> torch.Tensor:
        if self.used + count > self.uniforms.shape[1]:
            raise RuntimeError(
                f"augmentation needs more than {UNIFORMS_PER_VIEW} uniforms per view"
            )
        cols = self.uniforms[:, self.used : self.used + count]
        self.used += count
        return cols if count > 1 else cols[:, 0]

    def bernoulli(self, p: float) -> torch.Tensor:
        return self.take() < p

    def uniform(self, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * self.take()

    def normal(self, mean: float, std: float) -> torch.Tensor:
        """Box-Muller: one normal from two uniforms (1 - u keeps the log finite)."""
        u1, u2 = self.take(2).unbind(1)
        return mean + std * torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2 * math.pi * u2)

    def integers(self, low: int, high: torch.Tensor | int) -> torch.Tensor:
        """Uniform integers in [low, high) (high may differ per sample)."""
        return (
            (low + self.take() * (torch.as_tensor(high, dtype=torch.float64) - low)).floor().long()
        )

    def permutations(self, n: int) -> torch.Tensor:
        """(N, n) uniformly random permutations of range(n) (argsort of i.i.d. uniforms)."""
        return self.take(n).argsort(dim=1)


RESIZED_CROP_ATTEMPTS = 10


def resized_crop_boxes(
    draws: Draws,
    heights: torch.Tensor,
    widths: torch.Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """(N, 4) crops (top, left, height, width) by torchvision's RandomResizedCrop.get_params: up to
    ten tries of area ~ U(scale) and log-aspect ~ U(log ratio), the first that fits wins; otherwise
    the central crop with the aspect clamped to `ratio`."""
    heights, widths = heights.double(), widths.double()
    area = heights * widths
    target = area[:, None] * (scale[0] + (scale[1] - scale[0]) * draws.take(RESIZED_CROP_ATTEMPTS))
    log_ratio = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * draws.take(
        RESIZED_CROP_ATTEMPTS
    )
    aspect = torch.exp(log_ratio)
    # torchvision rounds with Python's round(), i.e. half to even, like torch.round.
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (h > 0) & (w <= widths[:, None]) & (h <= heights[:, None])
    first = fits.double().argmax(dim=1, keepdim=True)
    crop_h, crop_w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    u_top, u_left = draws.take(2).unbind(1)
    top = (u_top * (heights - crop_h + 1)).floor()
    left = (u_left * (widths - crop_w + 1)).floor()

    # torchvision's fallback when no try fits: the central crop, aspect clamped to `ratio`
    in_ratio = widths / heights
    fallback_w = torch.where(
        in_ratio < min(ratio),
        widths,
        torch.where(in_ratio > max(ratio), torch.round(heights * max(ratio)), widths),
    )
    fallback_h = torch.where(in_ratio < min(ratio), torch.round(widths / min(ratio)), heights)
    found = fits.any(dim=1)
    crop_h = torch.where(found, crop_h, fallback_h)
    crop_w = torch.where(found, crop_w, fallback_w)
    top = torch.where(found, top, torch.div(heights - crop_h, 2, rounding_mode="floor"))
    left = torch.where(found, left, torch.div(widths - crop_w, 2, rounding_mode="floor"))
    return torch.stack((top, left, crop_h, crop_w), dim=1).long()


def color_jitter_params(
    draws: Draws, brightness: float, contrast: float, saturation: float, hue: float, p: float
) -> dict:
    """torchvision ColorJitter inside RandomApply(p): whether it fires, its random order of the four
    adjustments (0 brightness, 1 contrast, 2 saturation, 3 hue) and their factors."""
    return {
        "apply": draws.bernoulli(p),
        "order": draws.permutations(4),
        "brightness": draws.uniform(max(0.0, 1 - brightness), 1 + brightness),
        "contrast": draws.uniform(max(0.0, 1 - contrast), 1 + contrast),
        "saturation": draws.uniform(max(0.0, 1 - saturation), 1 + saturation),
        "hue": draws.uniform(-hue, hue),
    }


def blur_params(draws: Draws, p: float, sigma: tuple[float, float]) -> dict:
    """GaussianBlur inside RandomApply(p): whether it fires and its sigma ~ U(sigma)."""
    return {"apply": draws.bernoulli(p), "sigma": draws.uniform(*sigma)}


RAND_AUGMENT_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
LEVEL_DENOM = 10.0


def rand_augment_params(
    draws: Draws,
    layers: int = 2,
    magnitude: float = 10.0,
    magnitude_std: float = 0.5,
    prob: float = 0.5,
) -> list[dict]:
    """timm's RandAugment per layer: op index (uniform over RAND_AUGMENT_OPS, with replacement),
    whether it fires, its clipped magnitude, a random sign (timm's _randomly_negate) and the
    resampling filter of the geometric ops (bilinear or bicubic, 50/50)."""
    layers_params = []
    for _ in range(layers):
        op = (
            (draws.take() * len(RAND_AUGMENT_OPS))
            .floor()
            .long()
            .clamp_(max=len(RAND_AUGMENT_OPS) - 1)
        )
        layers_params.append(
            {
                "op": op,
                "apply": draws.bernoulli(prob),
                "magnitude": draws.normal(magnitude, magnitude_std).clamp(0.0, LEVEL_DENOM),
                "negate": draws.bernoulli(0.5),
                "bicubic": draws.bernoulli(0.5),
            }
        )
    return layers_params
