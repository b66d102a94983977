"""DATA.VIEWS_FROM "folder": the two views of an instance are two different images of it.

Where the data holds several images of one thing (renderings that share chosen factors,
pretrain/demo/factor_views.py; frames of one video; photos of one object from several cameras), the
views need not come from augmenting one image: each folder is an instance, and a sample is two
distinct images of one folder, each then put through the view recipe (DATA.AUGMENTATION). What the
images of a folder share is what the contrastive task can learn from (InfoMin, Sec. 3).

Only for folders that hold views of one instance: class folders (ImageNet layout) would turn the
task into supervised learning with the labels as pairs.
"""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import torch

from .images import _decoded_rgb, sample_seed, seeded_rngs


class InstanceError(ValueError):
    """The image source has no folder with two or more images."""


def group_by_folder(images) -> list[list[int]]:
    """Indices of `images` (packed.FolderImages / PackedImages) grouped by their folder; folders
    with a single image are left out (they give no pair)."""
    groups = defaultdict(list)
    for index in range(len(images)):
        groups[os.path.dirname(images.name(index))].append(index)
    return [members for _folder, members in sorted(groups.items()) if len(members) >= 2]


class InstanceViews(torch.utils.data.Dataset):
    """Indexed by (epoch, instance); returns (views, bad): the query view made from one image of
    the instance's folder and the key view from another, both drawn with the sample's seed, so a
    resumed run replays them. An unreadable image is replaced by another of its folder (or, as a
    last resort, by its partner) and named in `bad` as (name, reason), as ImageViews does."""

    def __init__(self, images, make_views, seed: int = 0):
        self.images = images
        self.make_views = make_views
        self.seed = seed
        self.instances = group_by_folder(images)
        if not self.instances:
            raise InstanceError(
                "DATA.VIEWS_FROM folder: no folder holds two or more images "
                "(each instance is a folder of its views)"
            )

    def __len__(self) -> int:
        return len(self.instances)

    def _load(self, members: list[int], order: list[int]):
        """The first readable image in `order` (positions in `members`) and the (name, reason)
        of those before it that failed."""
        failed = []
        for position in order:
            index = members[position]
            try:
                return _decoded_rgb(self.images.read(index), index), failed
            except Exception as err:  # PIL raises many types for corrupt files
                failed.append((self.images.name(index), f"{type(err).__name__}: {err}"))
        raise InstanceError(
            f"no readable image in the instance folder of {self.images.name(members[0])}"
        )

    def __getitem__(self, epoch_and_index):
        epoch, index = epoch_and_index
        members = self.instances[index]
        seed = sample_seed(self.seed, epoch, index)
        order = np.random.default_rng(seed).permutation(len(members)).tolist()
        first, bad = self._load(members, order)
        used = len(bad)  # order[used] gave the first view
        rest = order[used + 1 :] or order[used : used + 1]
        second, more = self._load(members, rest)
        with seeded_rngs(seed):
            return self.make_views.pair(first, second), bad + more
