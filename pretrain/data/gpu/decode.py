"""Batched image decoding on the training device: JPEGs through torchvision.io.decode_jpeg on the
GPU (nvJPEG) in one call per batch; other formats, and JPEGs the GPU decoder refuses (e.g. CMYK),
through torchvision's CPU decoders. An image no decoder can read is replaced by another image of
the batch and named, as the CPU pipeline does with unreadable files (the run's BadImageLog
records each file once, however often it is drawn)."""

from __future__ import annotations

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


def decode_batch(
    encoded: list[torch.Tensor], names: list[str], device
) -> tuple[list[torch.Tensor], list[tuple[str, str]]]:
    """(3, H, W) uint8 RGB images on `device`, in order, and the (name, reason) of each image
    replaced by another of the batch."""
    device = torch.device(device)
    images: list[torch.Tensor | None] = [None] * len(encoded)
    jpegs = [i for i, data in enumerate(encoded) if _is_jpeg(data)]
    if device.type == "cuda" and jpegs:
        try:
            decoded = decode_jpeg(
                [encoded[i] for i in jpegs], mode=ImageReadMode.RGB, device=device
            )
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
    replaced = []
    for i, image in enumerate(images):
        if image is None:
            images[i] = readable[i % len(readable)]
            replaced.append((names[i], "no decoder could read it"))
    return images, replaced
