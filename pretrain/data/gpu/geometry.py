"""Batched geometric ops: resized crops of differently sized images into one batch, horizontal
flips, and the affine ops of RandAugment (rotate, shear, translate) with PIL's conventions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from .transfer import constant, to_device


def resized_crops(images: list[torch.Tensor], boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, size, size) uint8: crop `boxes` (top, left, height, width) of each image and resize
    it with antialiased bilinear interpolation, as RandomResizedCrop does on the CPU. The images
    differ in size, so this is one resize call per image (the only per-sample loop of the
    pipeline)."""
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8, device=images[0].device)
    for n, (image, (top, left, height, width)) in enumerate(zip(images, boxes.tolist())):
        out[n] = TF.resized_crop(image, top, left, height, width, [size, size], antialias=True)
    return out


def horizontal_flip(image: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    flip = to_device(flip, image.device).view(-1, 1, 1, 1)
    return torch.where(flip, image.flip(-1), image)


def rotation_matrices(degrees: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 2, 3) output->input pixel maps of PIL's Image.rotate(degrees) about the image centre
    (counter-clockwise for positive degrees)."""
    angle = -torch.deg2rad(degrees.double())
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = width / 2.0, height / 2.0
    return torch.stack(
        (
            torch.stack((cos, sin, cx - cos * cx - sin * cy), 1),
            torch.stack((-sin, cos, cy + sin * cx - cos * cy), 1),
        ),
        1,
    )


def affine_matrices(a, b, c, d, e, f) -> torch.Tensor:
    """(N, 2, 3) from PIL's six AFFINE coefficients (input = (a x + b y + c, d x + e y + f))."""
    return torch.stack((torch.stack((a, b, c), 1), torch.stack((d, e, f), 1)), 1).double()


def warp_affine(
    image: torch.Tensor, matrices: torch.Tensor, bicubic: bool, fill: tuple[int, int, int]
) -> torch.Tensor:
    """PIL's Image.transform(AFFINE) for a batch: every output pixel centre is mapped through its
    sample's matrix into the input; points inside the input are interpolated (edges clamped, as PIL
    does), points outside it get `fill`. Rounded back to uint8."""
    n, _, h, w = image.shape
    device = image.device
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32) + 0.5,
        torch.arange(w, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    points = torch.stack((xs, ys, torch.ones_like(xs)), -1).view(1, h * w, 3)
    matrices = to_device(matrices, device, torch.float32)
    source = points @ matrices.transpose(1, 2)  # (N, h*w, 2) input pixel coordinates
    inside = (
        (source[..., 0] >= 0) & (source[..., 0] < w) & (source[..., 1] >= 0) & (source[..., 1] < h)
    ).view(n, 1, h, w)
    grid = torch.stack((source[..., 0] * (2.0 / w) - 1.0, source[..., 1] * (2.0 / h) - 1.0), -1)
    warped = F.grid_sample(
        image.float(),
        grid.view(n, h, w, 2),
        mode="bicubic" if bicubic else "bilinear",
        padding_mode="border",
        align_corners=False,
    )
    warped = torch.where(inside, warped, constant(fill, device))
    return warped.round_().clamp_(0, 255).to(torch.uint8)


def shear_matrices(factor: torch.Tensor, horizontal: bool) -> torch.Tensor:
    one, zero = torch.ones_like(factor), torch.zeros_like(factor)
    if horizontal:  # timm shear_x: (1, factor, 0, 0, 1, 0)
        return affine_matrices(one, factor, zero, zero, one, zero)
    return affine_matrices(one, zero, zero, factor, one, zero)


def translate_matrices(pixels: torch.Tensor, horizontal: bool) -> torch.Tensor:
    one, zero = torch.ones_like(pixels), torch.zeros_like(pixels)
    if horizontal:  # timm translate_x_rel: (1, 0, pixels, 0, 1, 0)
        return affine_matrices(one, zero, pixels, zero, one, zero)
    return affine_matrices(one, zero, zero, zero, one, pixels)


def jigsaw_patches(
    image: torch.Tensor, offsets: torch.Tensor, grid: int, cell: int, patch: int
) -> torch.Tensor:
    """(N, grid*grid, C, patch, patch): the patch of each grid cell (row-major) at that sample's
    offset (dy, dx) inside the cell, as JigsawPatches cuts them on the CPU. `offsets` is
    (N, grid*grid, 2)."""
    n = image.shape[0]
    cells = torch.arange(grid * grid)
    tops = (cells // grid * cell)[None] + offsets[..., 0]  # (N, 9)
    lefts = (cells % grid * cell)[None] + offsets[..., 1]
    span = torch.arange(patch)
    rows = to_device(tops[..., None] + span, image.device)  # (N, 9, P)
    cols = to_device(lefts[..., None] + span, image.device)
    batch = torch.arange(n, device=image.device).view(n, 1, 1, 1)
    patches = image.permute(0, 2, 3, 1)[batch, rows[..., :, None], cols[..., None, :]]
    return patches.permute(0, 1, 4, 2, 3).contiguous()  # (N, 9, P, P, C) -> (N, 9, C, P, P)
