"""Shuffle-BN for runs with too few processes to shuffle across: BN over groups of the batch.

MoCo (He et al. 2020, Sec. 3.3) computes each GPU's BN statistics on its own 32 images and
shuffles the keys across 8 GPUs, so a query and its positive key never share statistics; with
plain BN they do, and the model can solve InfoNCE through the batch statistics instead of the
images (the paper reports the cheating and a worse linear readout). `SplitBatchNorm2d` computes
training statistics per group of the batch (images s with the same s mod G, as MoCo's one-GPU
CIFAR-10 demo groups them), as if each group were one GPU;
`MoCo.encode_keys` permutes the keys before the key encoder, so a key lands in another group than
its query's. In eval mode it is plain BN, and its parameters and buffers are BatchNorm2d's, so
checkpoints, conversion and evaluation see no difference."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common.errors import ConfigError
from .sync_bn import replace_batch_norms

TARGET_GROUPS = 8  # MoCo's 8 GPUs
MIN_GROUP = 16  # images per group below which the statistics get too noisy to choose it


class SplitBatchNorm2d(nn.BatchNorm2d):
    def __init__(self, num_features: int, splits: int, **kwargs):
        super().__init__(num_features, **kwargs)
        self.splits = splits

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, splits={self.splits}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.splits == 1:
            return super().forward(x)
        if len(x) % self.splits:
            raise ValueError(
                f"SplitBatchNorm2d: a batch of {len(x)} does not split into "
                f"{self.splits} equal groups (MODEL.BN_SPLITS)"
            )
        # One batch-norm call, as MoCo's CIFAR-10 demo makes it: the batch viewed as n / G
        # samples of G x C channels, so image s's channels sit in group s mod G (no copy for a
        # contiguous batch; channels_last is copied once). Each group updates its own copy of
        # the running statistics; their average is kept.
        n, c = x.shape[:2]
        groups = self.splits
        momentum, running_mean, running_var = 0.0, None, None
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = self.momentum
            if momentum is None:  # BatchNorm2d's cumulative average
                momentum = 1.0 / float(self.num_batches_tracked)
            running_mean = self.running_mean.repeat(groups)
            running_var = self.running_var.repeat(groups)
        weight = self.weight.repeat(groups) if self.weight is not None else None
        bias = self.bias.repeat(groups) if self.bias is not None else None
        out = F.batch_norm(
            x.reshape(n // groups, groups * c, *x.shape[2:]),
            running_mean,
            running_var,
            weight,
            bias,
            True,
            momentum,
            self.eps,
        )
        if self.track_running_stats:
            with torch.no_grad():
                self.running_mean.copy_(running_mean.view(groups, c).mean(dim=0))
                self.running_var.copy_(running_var.view(groups, c).mean(dim=0))
        return out.reshape(x.shape)


def bn_splits(requested: int, batch_per_process: int, world_size: int) -> int:
    """BN groups per process. `requested` > 0 is taken as given (it must divide the batch);
    0 chooses: enough groups for 8 over all processes, as MoCo's 8 GPUs, fewer where a group would
    hold under 16 images, and at least 2 in a one-process run, where without them nothing
    shuffles."""
    if requested > 0:
        if batch_per_process % requested:
            raise ConfigError(
                f"MODEL.BN_SPLITS {requested} does not divide the per-process batch "
                f"of {batch_per_process}"
            )
        return requested
    splits = math.ceil(TARGET_GROUPS / world_size)
    while splits > 1 and (batch_per_process % splits or batch_per_process // splits < MIN_GROUP):
        splits -= 1
    if splits == 1 and world_size == 1 and batch_per_process % 2 == 0:
        splits = 2
    return splits


def convert_to_split_bn(module: nn.Module, splits: int) -> nn.Module:
    """Every BatchNorm2d of `module` computes its training statistics over `splits` groups."""
    if splits == 1:
        return module
    return replace_batch_norms(
        module,
        lambda bn: SplitBatchNorm2d(
            bn.num_features,
            splits,
            eps=bn.eps,
            momentum=bn.momentum,
            affine=bn.affine,
            track_running_stats=bn.track_running_stats,
        ),
    )
