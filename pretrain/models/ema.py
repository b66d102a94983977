"""The momentum of a target (key) encoder over training: constant, as MoCo's, or annealed from
its base value to 1 by a half cosine, as BYOL's tau (Grill et al. 2020, Sec. 3.2):
    tau_k = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2,
k the current training step (0 for the first), K the run's total steps; MoCo v3's ResNet recipe
anneals its m the same way (official code, --moco-m-cos)."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn


def frozen_copy(network: nn.Module) -> nn.Module:
    """A copy of `network` that no optimizer step moves: a key encoder, target or teacher."""
    target = copy.deepcopy(network)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- m target + (1 - m) online, parameters only: the target's BN keeps its own
    running statistics, computed in train mode on what it encodes."""
    target_params, online_params = list(target.parameters()), list(online.parameters())
    torch._foreach_mul_(target_params, momentum)
    torch._foreach_add_(target_params, online_params, alpha=1.0 - momentum)


def run_length_momentum(base: float, reference_iters: int, total_iters: int) -> float:
    """The momentum that keeps an EMA's schedule the same in fractions of the run when a recipe
    made for `reference_iters` steps runs for `total_iters`: after a fraction f of the run the
    target has moved base^(f * reference_iters) of the way either way, so base' = base^(reference
    / total). BYOL's 0.996 over its 312,785 ImageNet steps becomes 0.002 over 200: at that length
    the target follows the online network within a step, as it does at the paper's length for
    all but the last 0.1% of the run (MODEL.MOMENTUM_REFERENCE_ITERS; 0: the base as given)."""
    if reference_iters <= 0 or total_iters <= 0:
        return base
    return base ** (reference_iters / total_iters)


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / total_steps) + 1.0) / 2.0


class MomentumSchedule(nn.Module):
    """Counts the momentum updates in a buffer (so a checkpoint resumes the schedule exactly) and
    gives each its momentum. `total_steps` (K) is set by the trainer once it knows the run's
    length; a cosine schedule refuses to run without it."""

    def __init__(self, base: float, cosine: bool, lead: int = 0):
        """`lead` 1: the update after step k takes m_{k+1}. MoCo v3's release updates its key
        encoder at the start of iteration k + 1 with m_{k+1}, just before computing the keys,
        from the query encoder as step k left it: the same update as ours after step k, with
        m_{k+1} (its update at iteration 0 leaves the copy unchanged). BYOL and DINO update
        after step k with m_k (lead 0)."""
        super().__init__()
        self.base, self.cosine, self.lead = base, cosine, lead
        self.total_steps = 0
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def next(self) -> float:
        """The momentum of this update; counts it."""
        k = int(self.step)
        self.step += 1
        if not self.cosine:
            return self.base
        if self.total_steps <= 0:
            raise RuntimeError(
                "MODEL.MOMENTUM_COSINE: the schedule's total_steps was never set "
                "(the trainer sets it to the run's iterations)"
            )
        return cosine_momentum(self.base, min(k + self.lead, self.total_steps), self.total_steps)
