"""The augmentations that make the two views each method contrasts (recipes: ../shared/docs/facts.md)."""
from __future__ import annotations

import torchvision.transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def blur_kernel_size(crop_size: int) -> int:
    """About 10% of the crop, odd (SimCLR's choice, kept by MoCo v2)."""
    return max(3, int(0.1 * crop_size) // 2 * 2 + 1)


def mocov1_augmentation(crop_size: int, scale: tuple[float, float]) -> T.Compose:
    return T.Compose([
        T.RandomResizedCrop(crop_size, scale=scale),
        T.RandomGrayscale(p=0.2),
        T.ColorJitter(0.4, 0.4, 0.4, 0.4),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def mocov2_augmentation(crop_size: int, scale: tuple[float, float]) -> T.Compose:
    return T.Compose([
        T.RandomResizedCrop(crop_size, scale=scale),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([T.GaussianBlur(blur_kernel_size(crop_size), sigma=(0.1, 2.0))], p=0.5),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


AUGMENTATIONS = {"mocov1": mocov1_augmentation, "mocov2": mocov2_augmentation}


class TwoViews:
    """Two independent draws of the same augmentation: (query view, key view)."""

    def __init__(self, augmentation):
        self.augmentation = augmentation

    def __call__(self, image):
        return self.augmentation(image), self.augmentation(image)


def build_views(cfg) -> TwoViews:
    name = cfg.DATA.AUGMENTATION
    if name not in AUGMENTATIONS:
        raise SystemExit(f"error: DATA.AUGMENTATION {name!r}: expected one of {sorted(AUGMENTATIONS)}")
    return TwoViews(AUGMENTATIONS[name](cfg.DATA.CROP_SIZE, tuple(cfg.DATA.CROP_SCALE)))
