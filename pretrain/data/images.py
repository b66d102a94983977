"""Unlabelled image sources: ImageNet-style class folders (labels ignored), a flat folder, or a text
file listing one image path per line. An unreadable image is replaced by another drawn at random
and reported by name (bad_data.py says what then happens: skipped and listed, or a one-line
error)."""

from __future__ import annotations

import contextlib
import io
import os
import random
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..common.errors import ConfigError, DatasetError
from .bad_data import BadImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
MAX_CONSECUTIVE_FAILURES = 16


def list_images(root: str) -> list[str]:
    """All image files under `root` (recursively, sorted), or the paths listed in `root` if it is a
    .txt file (relative paths are taken from the list's folder)."""
    if not root:
        raise ConfigError("no pretraining images: set DATA.ROOT or $PRETRAIN_DATA_ROOT")
    if os.path.isfile(root) and root.endswith(".txt"):
        base = os.path.dirname(os.path.abspath(root))
        with open(root) as f:
            paths = [os.path.join(base, line.strip()) for line in f if line.strip()]
    elif os.path.isdir(root):
        paths = sorted(
            os.path.join(folder, name)
            for folder, _, names in os.walk(root, followlinks=True)
            for name in names
            if name.lower().endswith(IMAGE_EXTENSIONS)
        )
    else:
        raise DatasetError(f"image root {root}: no such folder or .txt list")
    if not paths:
        raise DatasetError(f"image root {root}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    return paths


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """One seed per (run, epoch, image): augmentations then depend on neither the worker that drew
    the image nor where a resumed run restarted, so resuming reproduces the uninterrupted run."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_rngs(seed: int):
    """Seed torch, numpy and `random` (torchvision and timm's RandAugment draw from all three) for
    one sample, and give the caller back its own RNG states afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        # The CPU generator only (what fork_rng restores): torch.manual_seed also queues the
        # GPUs' seeding and costs 0.24 ms, 3% of a 64 px training step at one call per sample.
        torch.default_generator.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def first_readable(images, index: int, load: Callable, seed: int):
    """(load(bytes, position), bad): the image at `index` or, if `load` raises on it (PIL raises
    many types for corrupt files), on one drawn at random (from `seed`, so a resume draws the same);
    `bad` is the (name, reason) pairs of the files that failed. Random, not the next file: a whole
    unreadable class folder is a run of neighbours, and the next 16 would all fail."""
    rng = random.Random(seed)
    bad = []
    position = index
    for _ in range(MAX_CONSECUTIVE_FAILURES):
        try:
            return load(images.read(position), position), tuple(bad)
        except Exception as err:
            bad.append((images.name(position), f"{type(err).__name__}: {err}".replace("\n", " ")))
        position = rng.randrange(len(images))
    raise BadImageError(
        f"{MAX_CONSECUTIVE_FAILURES} images drawn in a row were unreadable "
        f"(first: {bad[0][0]}: {bad[0][1]}): is DATA.ROOT right?"
    )


def to_rgb(img: Image.Image) -> Image.Image:
    """`img` as 8-bit RGB. Pillow's convert("RGB") clips 16-bit grayscale (modes I;16*, and I
    as older Pillow reads such PNGs) at 255, which turns a 16-bit scan all white; those are
    scaled by their bit depth instead."""
    if img.mode.startswith("I;16") or img.mode == "I":
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "I" or values.max() > 255 else 255.0
        if values.max() > 65535:  # 32-bit data: its own range
            top = float(values.max())
        scaled = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    return img.convert("RGB")


def _decoded_rgb(data: bytes, position: int) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        return to_rgb(img)


class ImageViews(torch.utils.data.Dataset):
    """Indexed by (epoch, index); returns (views, bad) where `views` is what `make_views` made of
    the RGB image and `bad` the (name, reason) of unreadable files replaced by another image.
    `images` is a packed.FolderImages or packed.PackedImages. `with_index`: the views end with
    the sample's index (a 0-d tensor), its row in a memory bank (InsDis, PIRL); a replaced
    unreadable image keeps the index it was drawn for."""

    def __init__(self, images, make_views: Callable, seed: int = 0, with_index: bool = False):
        self.images = images
        self.make_views = make_views
        self.seed = seed
        self.with_index = with_index

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, epoch_and_index):
        epoch, index = epoch_and_index
        seed = sample_seed(self.seed, epoch, index)
        image, bad = first_readable(self.images, index, _decoded_rgb, seed)
        with seeded_rngs(seed):
            views = self.make_views(image)
        return ((*views, torch.tensor(index)) if self.with_index else views), bad


class EncodedImages(torch.utils.data.Dataset):
    """The CPU side of the GPU pipeline: indexed by (epoch, index), returns (the file's bytes as
    a uint8 tensor, its name, the sample's augmentation seed), bad; decoding and augmentation
    happen on the device (pretrain/data/gpu). Empty or unreadable files are replaced by another
    image and named in `bad`, as in ImageViews."""

    def __init__(self, images, seed: int = 0):
        self.images = images
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def _encoded(self, data: bytes, position: int):
        if not data:
            raise ValueError("empty file")
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), self.images.name(position)

    def __getitem__(self, epoch_and_index):
        epoch, index = epoch_and_index
        seed = sample_seed(self.seed, epoch, index)
        (encoded, name), bad = first_readable(self.images, index, self._encoded, seed)
        return (encoded, name, seed), bad


def bad_files(per_sample) -> tuple:
    """The (name, reason) pairs of a batch's samples, in one tuple."""
    return tuple(entry for bad in per_sample for entry in bad)


def collate_views(samples):
    """(the stacked views, the batch's bad files: see bad_files)."""
    views, bad = zip(*samples)
    stacked = [torch.stack(v) for v in zip(*views)]
    return stacked, bad_files(bad)


def collate_encoded(samples):
    """(list of byte tensors, list of names, list of seeds), bad files: left unstacked, the images
    differ in size until the device has decoded and cropped them."""
    items, bad = zip(*samples)
    encoded, names, seeds = (list(column) for column in zip(*items))
    return (encoded, names, seeds), bad_files(bad)
