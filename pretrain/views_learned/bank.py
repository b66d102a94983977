"""Small image sets held in memory as uint8 tensors, for training the view generator on a CPU:
every batch is drawn and augmented by a generator seeded with (seed, step), so a resumed run sees
exactly the batches an uninterrupted one would."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

from ..data.images import list_images
from ..data.views import IMAGENET_MEAN, IMAGENET_STD
from ..evaluation.data import labelled_folder

_MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def _to_uint8(size: int) -> T.Compose:
    return T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])


class ImageBank:
    """N uint8 RGB images (N, 3, S, S) and, for a labelled set, their class indices."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_folder(
        cls, root: str, size: int, limit: int = 0, seed: int = 0, labelled: bool = False
    ) -> "ImageBank":
        """Images under `root` resized and centre-cropped to `size`; with `limit`, a fixed random
        subset; `labelled` reads class folders (ImageFolder layout) and keeps the labels."""
        to_tensor = _to_uint8(size)
        if labelled:
            dataset = labelled_folder(root, to_tensor, limit, seed)
            pairs = [dataset[i] for i in range(len(dataset))]
            return cls(torch.stack([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs]))
        paths = list_images(root)
        if limit and limit < len(paths):
            keep = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed))[:limit]
            paths = [paths[i] for i in sorted(keep.tolist())]
        return cls(torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in paths]))

    def batch(self, step: int, size: int, seed: int, augment: bool = True):
        """(normalised float images, labels or None): `size` images drawn for `step`, each randomly
        flipped and shifted (4-pixel reflect-padded crop) when `augment`."""
        rng = torch.Generator().manual_seed(seed * 1_000_003 + step)
        index = torch.randint(len(self.images), (size,), generator=rng)
        x = self.images[index].float() / 255
        if augment:
            x = _flip_and_shift(x, rng)
        labels = self.labels[index] if self.labels is not None else None
        return normalise(x), labels

    def head(self, count: int):
        """The first `count` images, unaugmented (a fixed held-out batch)."""
        labels = self.labels[:count] if self.labels is not None else None
        return normalise(self.images[:count].float() / 255), labels


def normalise(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB to the ImageNet-normalised input of the project's pipelines (and of g)."""
    return (x - _MEAN) / _STD


def _flip_and_shift(x: torch.Tensor, rng: torch.Generator, pad: int = 4) -> torch.Tensor:
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=rng) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(2 * pad + 1, (n,), generator=rng).tolist()
    dx = torch.randint(2 * pad + 1, (n,), generator=rng).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
