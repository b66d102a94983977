"""Batch norm whose statistics span every process: torch's SyncBatchNorm on GPU; on CPU, where that
refuses to run, an all-reduce of the per-channel moments (gloo), differentiable through
torch.distributed.nn. Equal per-process batch sizes are assumed, as the sampler guarantees."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
import torch.nn as nn


class _AllReduceMoments:
    """The forward of the cross-process BN layers below, for (N, C) and (N, C, H, W) inputs, with
    or without affine parameters (the heads of SimCLR, SimSiam, MoCo v3 have BatchNorm1d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        world = dist.get_world_size()
        dims = [0, *range(2, x.dim())]
        # The moments in float32 under bf16 autocast (SOLVER.CPU_AMP), as torch's own batch norm
        # computes them: in bf16, E[x^2] - E[x]^2 cancels to a negative variance and NaN.
        x, dtype = x.to(torch.promote_types(x.dtype, torch.float32)), x.dtype
        moments = torch.cat([x.mean(dim=dims), (x * x).mean(dim=dims)])
        mean, mean_sq = (dist_nn.all_reduce(moments) / world).chunk(2)
        var = mean_sq - mean * mean
        with torch.no_grad():
            count = x.numel() // x.shape[1] * world
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * count / (count - 1), self.momentum)
            self.num_batches_tracked += 1
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = self.weight * scale
        shift = -mean * scale
        if self.bias is not None:
            shift = self.bias + shift
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x * scale.view(shape) + shift.view(shape)).to(dtype)


class AllReduceBatchNorm2d(_AllReduceMoments, nn.BatchNorm2d):
    pass


class AllReduceBatchNorm1d(_AllReduceMoments, nn.BatchNorm1d):
    pass


_ALL_REDUCE = {nn.BatchNorm2d: AllReduceBatchNorm2d, nn.BatchNorm1d: AllReduceBatchNorm1d}


def replace_batch_norms(module: nn.Module, build, kinds: tuple = (nn.BatchNorm2d,)) -> nn.Module:
    """Replace every plain BN of the `kinds` in `module` (in place) by `build(bn)`, which shares the
    original's Parameters and buffers: a frozen (key-encoder) BN stays frozen, and the state dict
    keeps its names and values."""
    for name, child in module.named_children():
        if type(child) in kinds:
            replacement = build(child)
            replacement.weight, replacement.bias = child.weight, child.bias
            for buffer_name, buffer in child.named_buffers():
                setattr(replacement, buffer_name, buffer)
            setattr(module, name, replacement)
        else:
            replace_batch_norms(child, build, kinds)
    return module


def convert_to_sync_bn(module: nn.Module, device: str) -> nn.Module:
    """Replace every BatchNorm1d / 2d in `module` by its cross-process version for `device`."""
    if device == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return replace_batch_norms(
        module,
        lambda bn: _ALL_REDUCE[type(bn)](
            bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats
        ),
        kinds=tuple(_ALL_REDUCE),
    )
