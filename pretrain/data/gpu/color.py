"""Batched photometric ops on uint8 images (N, 3, H, W), each with its own parameter per sample.

They follow what the CPU pipeline runs on PIL images, including its uint8 arithmetic: PIL's
ImageEnhance blends truncate (Image.blend), its grayscale is the ITU-R 601 integer formula, and
every op returns uint8 as a PIL image would. Where torchvision already has the batched op with the
PIL semantics (equalize, autocontrast, the sharpness kernel) it is used as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from .transfer import to_device


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return to_device(values, like.device, torch.float32).view(-1, 1, 1, 1)


def blend(degenerate: torch.Tensor, image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's Image.blend(degenerate, image, factor), truncated to uint8 as PIL does."""
    degenerate = degenerate.float()
    out = degenerate + _per_sample(factor, image) * (image.float() - degenerate)
    return out.clamp_(0, 255).floor_().to(torch.uint8)


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """PIL's convert("L"): (19595 R + 38470 G + 7471 B + 2^15) >> 16, as (N, 1, H, W) uint8."""
    r, g, b = image.int().unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 32768) >> 16).to(torch.uint8).unsqueeze(1)


def adjust_brightness(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return blend(torch.zeros_like(image), image, factor)


def adjust_contrast(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance.Contrast: blend with the image's mean gray level, rounded to an integer."""
    mean = grayscale(image).float().mean(dim=(1, 2, 3), keepdim=True)
    return blend(torch.floor(mean + 0.5).expand_as(image), image, factor)


def adjust_saturation(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance.Color: blend with the grayscale image."""
    return blend(grayscale(image).expand_as(image), image, factor)


def adjust_sharpness(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL ImageEnhance.Sharpness: blend with PIL's SMOOTH filter (borders kept); torchvision's
    adjust_sharpness at factor 0 is exactly that degenerate image."""
    return blend(TF.adjust_sharpness(image, 0.0), image, factor)


def _rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    r, g, b = rgb.unbind(1)
    maxc, _ = rgb.max(dim=1)
    minc, _ = rgb.min(dim=1)
    delta = maxc - minc
    value = maxc
    saturation = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(
        maxc == r,
        (g - b) / safe,
        torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe),
    )
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    return torch.stack((hue, saturation, value), dim=1)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    hue, saturation, value = hsv.unbind(1)
    sector = torch.floor(hue * 6.0)
    frac = hue * 6.0 - sector
    sector = sector.long() % 6
    p = value * (1.0 - saturation)
    q = value * (1.0 - saturation * frac)
    t = value * (1.0 - saturation * (1.0 - frac))
    choices = torch.stack(
        (
            torch.stack((value, t, p), 1),
            torch.stack((q, value, p), 1),
            torch.stack((p, value, t), 1),
            torch.stack((p, q, value), 1),
            torch.stack((t, p, value), 1),
            torch.stack((value, p, q), 1),
        ),
        dim=1,
    )  # (N, 6, 3, H, W)
    index = sector[:, None, None].expand(-1, 1, 3, -1, -1)
    return choices.gather(1, index).squeeze(1)


def adjust_hue(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Hue rotated by `factor` turns (in [-0.5, 0.5]) in HSV space. PIL quantises H, S and V to
    uint8 on the way, this works in float and rounds once: see the tolerance in the tests."""
    hsv = _rgb_to_hsv(image.float() / 255.0)
    hue = (hsv[:, 0] + to_device(factor, image.device, torch.float32).view(-1, 1, 1)) % 1.0
    rgb = _hsv_to_rgb(torch.stack((hue, hsv[:, 1], hsv[:, 2]), dim=1))
    return (rgb * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def to_grayscale_rgb(image: torch.Tensor) -> torch.Tensor:
    return grayscale(image).expand_as(image).contiguous()


def gaussian_kernels(kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """(N, k) normalised 1-D kernels, torchvision's _get_gaussian_kernel1d for each sigma."""
    half = (kernel_size - 1) * 0.5
    x = torch.linspace(-half, half, kernel_size, dtype=torch.float32, device=sigma.device)
    pdf = torch.exp(-0.5 * (x[None] / sigma.float()[:, None]) ** 2)
    return pdf / pdf.sum(dim=1, keepdim=True)


def gaussian_blur(image: torch.Tensor, kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """torchvision's gaussian_blur (reflect padding, rounded back to uint8) with one sigma per
    sample: the separable kernels run as one grouped convolution per axis."""
    n, c, h, w = image.shape
    kernels = gaussian_kernels(kernel_size, to_device(sigma, image.device)).repeat_interleave(
        c, dim=0
    )
    pad = kernel_size // 2
    x = F.pad(image.float().reshape(1, n * c, h, w), (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, kernels[:, None, None, :], groups=n * c)
    x = F.conv2d(x, kernels[:, None, :, None], groups=n * c)
    return x.reshape(n, c, h, w).round_().clamp_(0, 255).to(torch.uint8)


def invert(image: torch.Tensor) -> torch.Tensor:
    return 255 - image


def posterize(image: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the `bits` most significant bits of every channel (PIL ImageOps.posterize)."""
    mask = (255 << (8 - to_device(bits, image.device).clamp(0, 8))) & 255
    return image & mask.to(torch.uint8).view(-1, 1, 1, 1)


def solarize(image: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert the values at or above `threshold` (PIL ImageOps.solarize)."""
    threshold = to_device(threshold, image.device).view(-1, 1, 1, 1)
    return torch.where(image.int() >= threshold, 255 - image, image)


def solarize_add(image: torch.Tensor, add: torch.Tensor, threshold: int = 128) -> torch.Tensor:
    """timm's SolarizeAdd: values below `threshold` get `add` added, saturating at 255."""
    added = (
        (image.int() + to_device(add, image.device).view(-1, 1, 1, 1))
        .clamp_(max=255)
        .to(torch.uint8)
    )
    return torch.where(image < threshold, added, image)


def autocontrast(image: torch.Tensor) -> torch.Tensor:
    return TF.autocontrast(image)


def equalize(image: torch.Tensor) -> torch.Tensor:
    return TF.equalize(image)
