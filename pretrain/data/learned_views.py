"""The frozen generator as a view source: X = g(image), view 1 = X's first `split` channels,
view 2 = the rest (InfoMin Sec. 4.2). Saved as one file holding g's spec, weights and split."""

from __future__ import annotations

import torch

from ..common.atomic_io import atomic_torch_save
from .flow import PixelFlow, split_views

GENERATOR_FORMAT = "infomin-det/learned-views/v1"


class GeneratorFileError(ValueError):
    """A saved generator file is missing or not one written by save_generator."""


class LearnedViews:
    """Callable (C, H, W) or (N, C, H, W) ImageNet-normalised image(s) -> (view 1, view 2).

    Put it after an augmentation that ends in Normalize, e.g. T.Compose([compose(recipe),
    LearnedViews(g, 1)]), or call it on a batch on the GPU after the GPU pipeline."""

    def __init__(self, generator: PixelFlow, split: int):
        self.generator = generator.eval().requires_grad_(False)
        self.split = split
        split_views(torch.zeros(generator.channels, 1, 1), split)  # validate the split now

    @classmethod
    def from_file(cls, path: str, map_location="cpu") -> "LearnedViews":
        generator, split = load_generator(path, map_location)
        return cls(generator, split)

    def to(self, device) -> "LearnedViews":
        self.generator.to(device)
        return self

    @torch.no_grad()
    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        single = image.dim() == 3
        x = self.generator(image.unsqueeze(0) if single else image)
        v1, v2 = split_views(x, self.split)
        return (v1[0], v2[0]) if single else (v1, v2)


# DATA.COLOR_SPACE of CMC views made by a frozen generator (DATA.LEARNED_VIEWS), not a colour space.
LEARNED_SPACE = "learned"


class LearnedChannelViews:
    """CMC's two views from a frozen generator (InfoMin Sec. 4.2): ONE draw of the augmentation,
    ImageNet-normalised, through g, split into its first k1 and other k2 channels."""

    def __init__(self, augmentation, learned: LearnedViews):
        self.augmentation = augmentation
        self.learned = learned

    def __repr__(self) -> str:
        return (
            f"LearnedChannelViews(g: {self.learned.generator.spec()}, split {self.learned.split})"
        )

    def __call__(self, image):
        return self.learned(self.augmentation(image))


def learned_views_of(cfg) -> LearnedViews:
    """The frozen generator DATA.LEARNED_VIEWS names, checked against DATA.CHANNEL_SPLIT (the
    split it was learned with: the two views must be the ones the approximator scored)."""
    from ..common.errors import ConfigError

    path = cfg.DATA.LEARNED_VIEWS
    if not path:
        raise ConfigError(
            f"DATA.COLOR_SPACE {LEARNED_SPACE}: DATA.LEARNED_VIEWS must name a "
            "generator file (tools/learn_views.py writes one)"
        )
    try:
        learned = LearnedViews.from_file(path)
    except GeneratorFileError as err:
        raise ConfigError(f"DATA.LEARNED_VIEWS: {err}") from None
    channels = learned.generator.channels
    expected = (learned.split, channels - learned.split)
    if tuple(int(k) for k in cfg.DATA.CHANNEL_SPLIT) != expected:
        raise ConfigError(
            f"DATA.CHANNEL_SPLIT {tuple(cfg.DATA.CHANNEL_SPLIT)}: the generator "
            f"{path} was learned with the split {expected}"
        )
    return learned


def save_generator(path: str, generator: PixelFlow, split: int, extra: dict | None = None) -> None:
    atomic_torch_save(
        {
            "format": GENERATOR_FORMAT,
            "spec": generator.spec(),
            "split": split,
            "state_dict": generator.state_dict(),
            **(extra or {}),
        },
        path,
    )


def load_generator(path: str, map_location="cpu") -> tuple[PixelFlow, int]:
    try:
        saved = torch.load(path, map_location=map_location, weights_only=False)
    except FileNotFoundError:
        raise GeneratorFileError(f"generator {path}: no such file") from None
    if not isinstance(saved, dict) or saved.get("format") != GENERATOR_FORMAT:
        raise GeneratorFileError(
            f"generator {path}: not a learned-views generator (expected format {GENERATOR_FORMAT})"
        )
    generator = PixelFlow(**saved["spec"])
    generator.load_state_dict(saved["state_dict"])
    return generator, saved["split"]
