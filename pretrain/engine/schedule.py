"""Learning-rate schedules of the training loops, as torch LR schedulers (their state goes into
the checkpoint with the optimizer's, so a resume continues the schedule exactly)."""
from __future__ import annotations

from typing import Callable

import torch
from fvcore.common.param_scheduler import CosineParamScheduler


def warmup_cosine(peak: float, warmup_iters: int, total_iters: int) -> Callable[[int], float]:
    """Value at iteration `it` (0-based): linear warm-up from peak / warmup_iters to `peak` over
    `warmup_iters`, then a half cosine from `peak` to 0 at `total_iters`.

    The warm-up is written out, not fvcore's LinearParamScheduler: that one computes
    peak * ((it + 1) / warmup), which differs from the peak * (it + 1) / warmup the runs so far
    used in the last bit, and the loops must stay bit for bit what they were."""
    decay = CosineParamScheduler(peak, 0.0)

    def value(it: int) -> float:
        if it < warmup_iters:
            return peak * (it + 1) / warmup_iters
        return decay(min(1.0, (it - warmup_iters) / max(1, total_iters - warmup_iters)))
    return value


def warmup_steps(warmup_iters: int, milestones, gamma: float = 0.1) -> Callable[[int], float]:
    """As warmup_cosine with peak 1, but the warm-up is followed by a constant rate multiplied by
    `gamma` at each of `milestones` (iterations)."""
    def value(it: int) -> float:
        if it < warmup_iters:
            return (it + 1) / warmup_iters
        return gamma ** sum(it >= m for m in milestones)
    return value


def warmup_cosine_lr(optimizer: torch.optim.Optimizer, warmup_iters: int, total_iters: int,
                     peak: float = 1.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Each group's lr = its initial lr x warmup_cosine(peak, ...)(iteration); step once per
    iteration. Pretraining passes peak 1 (a multiplier of SGD's lr); the supervised baseline gives
    SGD lr 1 and the peak here, so each keeps its own rounding of the product."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer,
                                             warmup_cosine(peak, warmup_iters, total_iters))


def multistep_lr(optimizer: torch.optim.Optimizer, milestones, gamma: float
                 ) -> torch.optim.lr_scheduler.MultiStepLR:
    """lr x gamma at each milestone (epochs; step once per epoch), the linear readout's recipe."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma)
