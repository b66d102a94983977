"""The augmentations that make the two views each method contrasts (recipes: ../shared/docs/facts.md)."""
from __future__ import annotations

import torch
import torchvision.transforms as T
from timm.data.auto_augment import rand_augment_transform

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


def flip_augmentation(crop_size: int, scale: tuple[float, float]) -> T.Compose:
    """Next to nothing: resize, horizontal flip. For views that already differ by construction
    (DATA.VIEWS_FROM "folder"), where any further change adds to what the views do not share."""
    return T.Compose([
        T.Resize((crop_size, crop_size)),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def infomin_augmentation(crop_size: int, scale: tuple[float, float]) -> T.Compose:
    """InfoMin Aug (Tian et al. 2020, PyContrast): MoCo v2 with stronger colour jitter and timm's
    RandAugment (2 ops of 15, magnitude 10 +- 0.5, each applied with p = 0.5, ImageNet-mean fill)."""
    fill = tuple(min(255, round(255 * m)) for m in IMAGENET_MEAN)
    rand_augment = rand_augment_transform(
        "rand-n2-m10-mstd0.5", {"translate_const": int(crop_size * 0.45), "img_mean": fill})
    return T.Compose([
        T.RandomResizedCrop(crop_size, scale=scale),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
        T.RandomApply([T.GaussianBlur(blur_kernel_size(crop_size), sigma=(0.1, 2.0))], p=0.5),
        rand_augment,
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class JigsawPatches:
    """PIRL's jigsaw input: a (grid*grid, C, patch, patch) stack of patches, one per grid cell,
    each at a random offset inside its cell (row-major order; the model shuffles them)."""

    def __init__(self, grid: int = 3, cell: int = 85, patch: int = 64):
        self.grid, self.cell, self.patch = grid, cell, patch

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        jitter = self.cell - self.patch
        offsets = torch.randint(0, jitter + 1, (self.grid * self.grid, 2)).tolist()
        patches = []
        for i, (dy, dx) in enumerate(offsets):
            top = (i // self.grid) * self.cell + dy
            left = (i % self.grid) * self.cell + dx
            patches.append(image[:, top:top + self.patch, left:left + self.patch])
        return torch.stack(patches)


def jigsaw_augmentation(grid: int = 3, cell: int = 85, patch: int = 64) -> T.Compose:
    """The JigSaw branch's view: a 255 px crop of scale (0.6, 1), flipped and colour-jittered, cut
    into a 3x3 grid of 64 px patches jittered in 85 px cells."""
    return T.Compose([
        T.RandomResizedCrop(grid * cell, scale=(0.6, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        JigsawPatches(grid, cell, patch),
    ])


AUGMENTATIONS = {"mocov1": mocov1_augmentation, "mocov2": mocov2_augmentation,
                 "infomin": infomin_augmentation, "flip": flip_augmentation}


class ContrastiveViews:
    """Two independent draws of the same augmentation (query view, key view), plus the jigsaw
    patches when the method has a JigSaw branch."""

    def __init__(self, augmentation, jigsaw=None):
        self.augmentation = augmentation
        self.jigsaw = jigsaw

    def __call__(self, image):
        return self.pair(image, image)

    def pair(self, query_image, key_image):
        """The views of two images of one instance (instances.py); the patches come from the
        query's image."""
        views = (self.augmentation(query_image), self.augmentation(key_image))
        return views + (self.jigsaw(query_image),) if self.jigsaw is not None else views


def build_views(cfg) -> ContrastiveViews:
    name = cfg.DATA.AUGMENTATION
    if name not in AUGMENTATIONS:
        raise SystemExit(f"error: DATA.AUGMENTATION {name!r}: expected one of {sorted(AUGMENTATIONS)}")
    jigsaw = (jigsaw_augmentation(cfg.MODEL.JIGSAW.GRID, cfg.MODEL.JIGSAW.CELL, cfg.MODEL.JIGSAW.PATCH)
              if cfg.MODEL.JIGSAW.ENABLED else None)
    return ContrastiveViews(AUGMENTATIONS[name](cfg.DATA.CROP_SIZE, tuple(cfg.DATA.CROP_SCALE)),
                            jigsaw)
