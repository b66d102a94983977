#!/usr/bin/env python
"""Split BN (shuffle-BN in one process, pretrain/models/split_bn.py) in one batch-norm call against
one call per group, interleaved in one run: forward plus backward of a training-mode layer, and a
whole ResNet-18 step's worth of such layers at 32 px, in ms and as a ratio.

    python bench/split_bn.py [--batch 512] [--groups 8] [--repeats 20] [--threads 1]

The per-group side is written here as the layer computed it before (torch.cat of G calls on
contiguous groups); it groups the images differently (chunks, not s mod G), so the check before
timing reorders the batch to compare the same groups.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def per_group(layer, x: torch.Tensor) -> torch.Tensor:
    """The layer as it computed before: one F.batch_norm per contiguous group, then torch.cat."""
    groups = layer.splits
    mean = layer.running_mean.repeat(groups, 1)
    var = layer.running_var.repeat(groups, 1)
    return torch.cat(
        [
            F.batch_norm(
                group, mean[g], var[g], layer.weight, layer.bias, True, layer.momentum, layer.eps
            )
            for g, group in enumerate(x.chunk(groups))
        ]
    )


def grouped_first(x: torch.Tensor, groups: int) -> torch.Tensor:
    """The batch reordered so that one-call group g (images s mod G == g) is contiguous chunk g."""
    return x.reshape(len(x) // groups, groups, *x.shape[1:]).transpose(0, 1).reshape(x.shape)


def timed(fn, x: torch.Tensor, repeats: int) -> float:
    """Median ms of forward + backward."""
    times = []
    for _ in range(repeats):
        x.grad = None
        start = time.perf_counter()
        fn(x).square().mean().backward()
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from pretrain.models.split_bn import SplitBatchNorm2d

    # ResNet-18's BN layers at 32 px with the CIFAR stem: (channels, side, how many)
    shapes = [(64, 32, 5), (128, 16, 5), (256, 8, 5), (512, 4, 5)]
    print(
        f"batch {args.batch}, {args.groups} groups, {args.threads} thread(s), median of "
        f"{args.repeats}, forward + backward"
    )
    print(f"{'layer':>16} {'one call ms':>12} {'per group ms':>13} {'ratio':>6}")
    total_one = total_group = 0.0
    for channels, side, count in shapes:
        layer = SplitBatchNorm2d(channels, args.groups).train()
        x = torch.randn(args.batch, channels, side, side, requires_grad=True)
        same = per_group(layer, grouped_first(x, args.groups))
        assert torch.allclose(grouped_first(layer(x), args.groups), same, atol=1e-5)
        one = group = 0.0
        for _ in range(2):  # interleaved: each side twice, the sums compared
            one += timed(layer, x, args.repeats)
            group += timed(lambda t: per_group(layer, t), x, args.repeats)
        total_one += count * one / 2
        total_group += count * group / 2
        print(
            f"{f'{channels} x {side}x{side}':>16} {one / 2:12.2f} {group / 2:13.2f} "
            f"{group / one:6.2f}"
        )
    print(
        f"{'ResNet-18 (20 BN)':>16} {total_one:12.1f} {total_group:13.1f} "
        f"{total_group / total_one:6.2f}"
    )


if __name__ == "__main__":
    main()
