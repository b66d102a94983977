"""Which images each process sees at each iteration: a fixed permutation per epoch, sliced by
iteration and rank, so a run resumed at iteration i draws exactly the batches the uninterrupted run
drew from i on."""
from __future__ import annotations

import torch


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of (epoch, index) for this process, iterations `start_iter`..end of one epoch.
    The last partial global batch of an epoch is dropped, as in the reference."""

    def __init__(self, num_images: int, global_batch: int, rank: int, world_size: int, seed: int,
                 epoch: int, start_iter: int = 0):
        if global_batch % world_size:
            raise SystemExit(f"error: SOLVER.BATCH_SIZE {global_batch} is not divisible by the "
                             f"{world_size} processes")
        self.num_images = num_images
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.rank = rank
        self.seed = seed
        self.epoch = epoch
        self.start_iter = start_iter

    @staticmethod
    def iterations_per_epoch(num_images: int, global_batch: int) -> int:
        return num_images // global_batch

    def __len__(self) -> int:
        return self.iterations_per_epoch(self.num_images, self.global_batch) - self.start_iter

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.num_images, generator=generator).tolist()
        for it in range(self.start_iter, self.start_iter + len(self)):
            first = it * self.global_batch + self.rank * self.local_batch
            yield [(self.epoch, i) for i in order[first:first + self.local_batch]]
