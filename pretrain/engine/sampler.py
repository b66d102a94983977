"""Which images each process sees at each iteration: a fixed permutation per epoch, sliced by
iteration and rank, so a run resumed at iteration i draws exactly the batches the uninterrupted run
drew from i on. Pretraining and the supervised baseline draw their batches from it."""

from __future__ import annotations

import torch

from ..common.errors import ConfigError, DatasetError
from .checkpoint import set_rng_state


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of (epoch, index) for this process (of indices with `with_epoch` False),
    iterations `start_iter`..end of one epoch. The last partial global batch of an epoch is
    dropped, as in the reference."""

    def __init__(
        self,
        num_images: int,
        global_batch: int,
        rank: int,
        world_size: int,
        seed: int,
        epoch: int,
        start_iter: int = 0,
        with_epoch: bool = True,
    ):
        if global_batch % world_size:
            raise ConfigError(
                f"SOLVER.BATCH_SIZE {global_batch} is not divisible by the {world_size} processes"
            )
        self.num_images = num_images
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.rank = rank
        self.seed = seed
        self.epoch = epoch
        self.start_iter = start_iter
        self.with_epoch = with_epoch

    @staticmethod
    def iterations_per_epoch(num_images: int, global_batch: int) -> int:
        return num_images // global_batch

    def __len__(self) -> int:
        return self.iterations_per_epoch(self.num_images, self.global_batch) - self.start_iter

    def __iter__(self):
        order = epoch_order(self.num_images, self.seed, self.epoch)
        for it in range(self.start_iter, self.start_iter + len(self)):
            first = it * self.global_batch + self.rank * self.local_batch
            batch = order[first : first + self.local_batch]
            yield [(self.epoch, i) for i in batch] if self.with_epoch else batch


def epoch_order(num_images: int, seed: int, epoch: int) -> list[int]:
    """The images of one epoch in their shuffled order: a function of (seed, epoch) alone."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_images, generator=generator).tolist()


def batches_per_epoch(num_images: int, global_batch: int, root: str) -> int:
    """Whole global batches in one epoch; none is a DatasetError naming `root`."""
    per_epoch = EpochBatchSampler.iterations_per_epoch(num_images, global_batch)
    if per_epoch == 0:
        raise DatasetError(
            f"{root} holds {num_images} samples, fewer than one batch "
            f"(SOLVER.BATCH_SIZE {global_batch})"
        )
    return per_epoch


def seeded_batches(
    dataset,
    global_batch: int,
    seed: int,
    start_iter: int,
    rank: int = 0,
    world_size: int = 1,
    with_epoch: bool = True,
    resumed_rng=None,
    **loader_args,
):
    """(epoch, batch) from iteration `start_iter` on, epoch after epoch, through a DataLoader
    per epoch (`loader_args`: num_workers, collate_fn, pin_memory). Each epoch's loader starts
    only when its first batch is asked for, so the loop's random draws keep their order.

    `resumed_rng`: the random state a resume restored (rng_state()). A loader draws its base seed
    from the global generator when it starts; the uninterrupted run drew the epoch's before the
    checkpoint, so a resume in mid-epoch restores the state again after its loader's draw, and
    the main process's draws (e.g. the transforms with num_workers 0) go on as they would have.
    DataLoader workers draw from their own generators: with workers, a mid-epoch resume is not
    exact unless the dataset seeds each sample itself (as pretraining's views do)."""
    per_epoch = EpochBatchSampler.iterations_per_epoch(len(dataset), global_batch)
    epoch, skip = divmod(start_iter, per_epoch)
    while True:
        sampler = EpochBatchSampler(
            len(dataset),
            global_batch,
            rank,
            world_size,
            seed,
            epoch,
            start_iter=skip,
            with_epoch=with_epoch,
        )
        batches = iter(torch.utils.data.DataLoader(dataset, batch_sampler=sampler, **loader_args))
        if skip and resumed_rng is not None:
            set_rng_state(resumed_rng)
        for batch in batches:
            yield epoch, batch
        epoch, skip = epoch + 1, 0
