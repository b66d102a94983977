"""Readout settings that would run and report a number that means nothing: a training set
smaller than one batch (the readout drops the last partial batch, so it trains 0 steps and
reports chance accuracy), no epochs, no neighbours; and a readout without a checkpoint, which
measures a randomly initialised backbone (a baseline, said so in one line)."""

from __future__ import annotations

import sys

from ..common.errors import ConfigError, DatasetError


def require_training_steps(
    images: int, batch_size: int, epochs: int, root_key: str, root: str
) -> None:
    """At least one full batch per epoch and one epoch, or ConfigError naming the keys."""
    if epochs < 1:
        raise ConfigError(f"SOLVER.EPOCHS {epochs}: the readout would train 0 steps")
    if batch_size < 1:
        raise ConfigError(f"SOLVER.BATCH_SIZE {batch_size}: must be at least 1")
    if images < batch_size:
        raise ConfigError(
            f"{root_key} {root} has {images} images, fewer than one batch "
            f"(SOLVER.BATCH_SIZE {batch_size}): the readout would train 0 steps; "
            "lower SOLVER.BATCH_SIZE or add images"
        )


def require_neighbours(
    train_images: int, test_images: int, k: int, train_root: str, test_root: str
) -> None:
    """A kNN readout needs k >= 1 and images on both sides."""
    if k < 1:
        raise ConfigError(f"k {k}: a kNN readout needs at least one neighbour")
    for count, root in ((train_images, train_root), (test_images, test_root)):
        if count == 0:
            raise DatasetError(f"{root}: no images to read out (after the limit)")


def warn_random_backbone(checkpoint: str, key: str) -> None:
    """One line on stderr when `checkpoint` (the value of `key`) is empty."""
    if not checkpoint:
        print(
            f"warning: no {key}: reading out a randomly initialised backbone (the baseline)",
            file=sys.stderr,
            flush=True,
        )
