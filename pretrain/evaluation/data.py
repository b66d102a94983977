"""Labelled image folders (ImageNet layout) for the readouts, optionally subsampled."""
from __future__ import annotations

import os

import torch
import torchvision
import torchvision.transforms as T

from ..data.views import IMAGENET_MEAN, IMAGENET_STD


def eval_transform(crop_size: int) -> T.Compose:
    """Resize to crop / 0.875 and centre-crop, the usual ImageNet evaluation (also upsamples small
    images such as CIFAR to the pretraining crop)."""
    return T.Compose([T.Resize(int(round(crop_size / 0.875))), T.CenterCrop(crop_size),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def train_transform(crop_size: int, scale: tuple[float, float] = (0.08, 1.0)) -> T.Compose:
    """The training augmentation of the readouts (MoCo's main_lincls) and of supervised
    pretraining: random resized crop of `scale` of the image, flip."""
    return T.Compose([T.RandomResizedCrop(crop_size, scale=scale), T.RandomHorizontalFlip(),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def labelled_folder(root: str, transform, limit: int = 0, seed: int = 0):
    """ImageFolder of `root`; with `limit`, a fixed random subset of that many images."""
    if not os.path.isdir(root):
        raise SystemExit(f"error: labelled image folder {root}: no such folder")
    dataset = torchvision.datasets.ImageFolder(root, transform=transform)
    if limit and limit < len(dataset):
        keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:limit]
        dataset = torch.utils.data.Subset(dataset, sorted(keep.tolist()))
    return dataset


def folder_classes(dataset) -> list[str]:
    """The class names of a `labelled_folder`, subsampled or not."""
    base = dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset
    return base.classes
