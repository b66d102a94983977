"""Batched image decoding on the training device: JPEGs through torchvision.io.decode_jpeg on the
GPU (nvJPEG) in one call per batch; other formats, and JPEGs the GPU decoder refuses (e.g. CMYK),
through torchvision's CPU decoders. An image no decoder can read is replaced by another image of
the batch and counted, as the CPU pipeline skips unreadable files."""
from __future__ import annotations

import sys

import torch
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

JPEG_MAGIC = b"\xff\xd8"


def _is_jpeg(data: torch.Tensor) -> bool:
    return len(data) > 2 and bytes(data[:2].tolist()) == JPEG_MAGIC


def _decode_on_cpu(data: torch.Tensor, device) -> torch.Tensor | None:
    try:
        return decode_image(data, mode=ImageReadMode.RGB).to(device, non_blocking=True)
    except RuntimeError:
        return None


def decode_batch(encoded: list[torch.Tensor], names: list[str], device
                 ) -> tuple[list[torch.Tensor], int]:
    """(3, H, W) uint8 RGB images on `device`, in order, and how many were replaced."""
    device = torch.device(device)
    images: list[torch.Tensor | None] = [None] * len(encoded)
    jpegs = [i for i, data in enumerate(encoded) if _is_jpeg(data)]
    if device.type == "cuda" and jpegs:
        try:
            decoded = decode_jpeg([encoded[i] for i in jpegs], mode=ImageReadMode.RGB,
                                  device=device)
            for i, image in zip(jpegs, decoded):
                images[i] = image
        except RuntimeError:  # one bad file fails the batch call: decode one by one instead
            for i in jpegs:
                try:
                    images[i] = decode_jpeg(encoded[i], mode=ImageReadMode.RGB, device=device)
                except RuntimeError:
                    pass
    for i, image in enumerate(images):
        if image is None:
            images[i] = _decode_on_cpu(encoded[i], device)
    readable = [image for image in images if image is not None]
    if not readable:
        raise RuntimeError(f"no image of the batch could be decoded (first: {names[0]})")
    replaced = 0
    for i, image in enumerate(images):
        if image is None:
            print(f"warning: skipped undecodable image {names[i]}", file=sys.stderr)
            images[i] = readable[i % len(readable)]
            replaced += 1
    return images, replaced
