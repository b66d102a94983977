"""Labelled image folders (ImageNet layout) for the readouts, optionally subsampled; files whose
header cannot be read are left out up front, and one that fails to decode later stops the run
with one line naming it (a readout cannot swap in another image without biasing its score)."""

from __future__ import annotations

import os
import sys

import torch
import torchvision
import torchvision.transforms as T
from PIL import Image

from ..common.errors import ConfigError, DatasetError
from ..data.bad_data import BadImageError, check_choice, file_problem, problems_of
from ..data.images import to_rgb
from ..data.views import IMAGENET_MEAN, IMAGENET_STD


class EvalResize:
    """Resize the short side to crop / crop_fraction, except that an image no larger than the crop
    is resized to the crop itself: a small image (CIFAR at 32 px) is shown whole, not resized up
    and cropped back down, which would show what a training crop of scale ~0.8 shows (a confound
    in a crop sweep)."""

    def __init__(self, crop_size: int, crop_fraction: float):
        self.crop_size = crop_size
        self.resize = T.Resize(int(round(crop_size / crop_fraction)))
        self.fit = T.Resize(crop_size)

    def __call__(self, img: Image.Image) -> Image.Image:
        return self.fit(img) if min(img.size) <= self.crop_size else self.resize(img)


def eval_transform(crop_size: int, crop_fraction: float = 0.875) -> T.Compose:
    """EvalResize and a centre crop: 0.875 is the usual ImageNet evaluation (it shows about 77% of
    a square image's area), 1.0 shows the whole image; an image no larger than the crop is shown
    whole either way (EVAL.CROP_FRACTION)."""
    if not 0 < crop_fraction <= 1:
        raise ConfigError(
            f"crop fraction {crop_fraction} (EVAL.CROP_FRACTION): expected a value in (0, 1]"
        )
    return T.Compose(
        [
            EvalResize(crop_size, crop_fraction),
            T.CenterCrop(crop_size),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def train_transform(crop_size: int, scale: tuple[float, float] = (0.08, 1.0)) -> T.Compose:
    """The training augmentation of the readouts (MoCo's main_lincls) and of supervised
    pretraining: random resized crop of `scale` of the image, flip."""
    return T.Compose(
        [
            T.RandomResizedCrop(crop_size, scale=scale),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def named_rgb_loader(path: str) -> Image.Image:
    """torchvision's PIL loader, with the file's path in the error."""
    try:
        with open(path, "rb") as f, Image.open(f) as img:
            return to_rgb(img)
    except Exception as err:  # Pillow raises many types for corrupt files
        raise BadImageError(f"{path}: {type(err).__name__}: {err}".replace("\n", " ")) from None


_UNREADABLE: dict[tuple[str, int], list[tuple[str, str]]] = {}


def unreadable_files(root: str, paths: list[str]) -> list[tuple[str, str]]:
    """(path, reason) of the files whose header cannot be read; remembered per folder for the
    process, so the kNN monitor checks its folders once per run, not at every evaluation."""
    key = (os.path.abspath(root), len(paths))
    if key not in _UNREADABLE:
        _UNREADABLE[key] = problems_of(paths, lambda p: file_problem(p, decode=False))
    return _UNREADABLE[key]


def labelled_folder(root: str, transform, limit: int = 0, seed: int = 0, on_bad: str = "skip"):
    """ImageFolder of `root` less the files whose header cannot be read (on_bad "skip": named in
    a warning; "error": a one-line error naming the first); with `limit`, a fixed random subset of
    that many images."""
    if not os.path.isdir(root):
        raise DatasetError(f"labelled image folder {root}: no such folder")
    check_choice("on_bad", on_bad)
    try:
        dataset = torchvision.datasets.ImageFolder(
            root, transform=transform, loader=named_rgb_loader
        )
    except FileNotFoundError as err:  # no class subfolders, or no image in them
        raise DatasetError(
            f"labelled image folder {root}: {err} (a labelled set is one "
            "subfolder of images per class, as ImageNet's train/)"
        ) from None
    bad = unreadable_files(root, [path for path, _ in dataset.samples])
    if bad and on_bad == "error":
        raise BadImageError(f"{bad[0][0]}: {bad[0][1]} ({len(bad)} unreadable images in {root})")
    if bad:
        print(
            f"warning: {len(bad)} unreadable images of {root} left out, e.g. {bad[0][0]}: "
            f"{bad[0][1]}",
            file=sys.stderr,
        )
        dropped = {path for path, _ in bad}
        dataset.samples = [s for s in dataset.samples if s[0] not in dropped]
        dataset.imgs, dataset.targets = dataset.samples, [t for _, t in dataset.samples]
    if limit and limit < len(dataset):
        keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:limit]
        dataset = torch.utils.data.Subset(dataset, sorted(keep.tolist()))
    return dataset


def folder_classes(dataset) -> list[str]:
    """The class names of a `labelled_folder`, subsampled or not."""
    base = dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset
    return base.classes
