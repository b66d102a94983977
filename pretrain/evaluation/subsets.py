"""The labelled fraction a semi-supervised fine-tuning trains on: a class-balanced percentage of a
labelled folder drawn with a seed, or the images a file names (SimCLR's published ImageNet
1percent.txt / 10percent.txt lists: one file name per line, e.g. n01440764_10026.JPEG)."""

from __future__ import annotations

import os

import torch

from ..common.errors import DatasetError


def _samples(dataset) -> list[tuple[str, int]]:
    """(path, class index) of an ImageFolder, or of a Subset of one, in the dataset's order."""
    if isinstance(dataset, torch.utils.data.Subset):
        return [dataset.dataset.samples[i] for i in dataset.indices]
    return list(dataset.samples)


def _base(dataset):
    return dataset.dataset if isinstance(dataset, torch.utils.data.Subset) else dataset


def balanced_fraction(dataset, percent: float, seed: int) -> list[int]:
    """Indices into `dataset`: from each class round(percent% of its images), at least one,
    chosen by a permutation seeded with (seed, class) alone, so another percentage or another
    class's size does not change which images a class gives."""
    by_class: dict[int, list[int]] = {}
    for index, (_, label) in enumerate(_samples(dataset)):
        by_class.setdefault(label, []).append(index)
    chosen = []
    for label, indices in sorted(by_class.items()):
        count = max(1, round(len(indices) * percent / 100))
        generator = torch.Generator().manual_seed(seed * 100_003 + label)
        order = torch.randperm(len(indices), generator=generator)[:count]
        chosen += [indices[i] for i in order.tolist()]
    return sorted(chosen)


def listed_images(dataset, list_file: str, root: str) -> list[int]:
    """Indices into `dataset` of the images `list_file` names: bare file names (unique in the
    folder, as ImageNet's are) or paths relative to `root` (class/name). A DatasetError names the
    file and what it lacks, or a bare name that several class folders hold."""
    if not os.path.isfile(list_file):
        raise DatasetError(f"DATA.SUBSET_FILE {list_file}: no such file")
    with open(list_file) as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise DatasetError(f"DATA.SUBSET_FILE {list_file}: names no image")
    by_path: dict[str, list[int]] = {}
    for i, (path, _) in enumerate(_samples(dataset)):
        relative = os.path.relpath(path, root)
        by_path.setdefault(relative, []).append(i)
        by_path.setdefault(os.path.basename(path), []).append(i)
    chosen, missing = set(), []
    for name in names:
        found = by_path.get(os.path.normpath(name), [])
        if len(found) > 1:
            raise DatasetError(
                f"DATA.SUBSET_FILE {list_file}: {name} is in {len(found)} class "
                f"folders of {root}; name it as class/{name}"
            )
        if not found:
            missing.append(name)
        chosen.update(found)
    if missing:
        raise DatasetError(
            f"DATA.SUBSET_FILE {list_file}: {len(missing)} of its {len(names)} "
            f"images are not in {root}, e.g. {', '.join(missing[:3])}"
        )
    return sorted(chosen)


def labelled_subset(dataset, root: str, percent: float, seed: int, list_file: str = ""):
    """The training subset (torch Subset of `dataset`) and the file names it holds, sorted."""
    indices = (
        listed_images(dataset, list_file, root)
        if list_file
        else balanced_fraction(dataset, percent, seed)
    )
    subset = torch.utils.data.Subset(_base(dataset), [_index(dataset, i) for i in indices])
    names = sorted(os.path.relpath(path, root) for path, _ in _samples(subset))
    return subset, names


def _index(dataset, i: int) -> int:
    """Index i of `dataset` as an index of its underlying ImageFolder."""
    return dataset.indices[i] if isinstance(dataset, torch.utils.data.Subset) else i
