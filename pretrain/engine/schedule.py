"""Learning-rate schedules of the training loops, as torch LR schedulers (their state goes into
the checkpoint with the optimizer's, so a resume continues the schedule exactly)."""

from __future__ import annotations

from typing import Callable

import torch
from fvcore.common.param_scheduler import CosineParamScheduler


LR_SCALINGS = ("linear", "sqrt", "none")


def batch_scaled_lr(base_lr: float, batch_size: int, scaling: str = "linear") -> float:
    """The lr rule of every loop: `base_lr` is for a batch of 256; "linear" scales it by
    batch / 256 (Goyal et al.; MoCo, BYOL, the readouts), "sqrt" by sqrt(batch / 256)
    (SimCLR's rule for small batches, SOLVER.LR_SCALING); "none" takes `base_lr` at any batch
    (AMDIM's release: Adam at 2e-4 whatever the batch)."""
    if scaling not in LR_SCALINGS:
        from ..common.errors import ConfigError

        raise ConfigError(f"SOLVER.LR_SCALING {scaling!r}: expected one of {LR_SCALINGS}")
    if scaling == "none":
        return base_lr
    ratio = batch_size / 256
    return base_lr * (ratio if scaling == "linear" else ratio**0.5)


# SOLVER.WARMUP_RULE: the linear warm-up's value at iteration `it` (0-based) of W warm-up steps,
# as a fraction of the peak. The releases differ in where the ramp starts:
WARMUP_RULES = {
    "one_based": lambda it, w: (it + 1) / w,  # first step at 1/W, reaches the peak at it = W - 1
    # SimCLR's (TF, global_step / warmup_steps), BYOL's and MoCo v3's (epoch / warmup_epochs,
    # the epoch fractional per iteration) releases: the first step at lr 0
    "from_zero": lambda it, w: it / w,
    # DINO's cosine_scheduler (and SwAV's): np.linspace(0, peak, W), the peak at it = W - 1
    "linspace": lambda it, w: it / (w - 1) if w > 1 else 1.0,
}


def warmup_rule(name: str) -> Callable[[int, int], float]:
    if name not in WARMUP_RULES:
        from ..common.errors import ConfigError

        raise ConfigError(f"SOLVER.WARMUP_RULE {name!r}: expected one of {list(WARMUP_RULES)}")
    return WARMUP_RULES[name]


def warmup_cosine(
    peak: float, warmup_iters: int, total_iters: int, rule: str = "one_based", floor: float = 0.0
) -> Callable[[int], float]:
    """Value at iteration `it` (0-based): a linear warm-up to `peak` over `warmup_iters` by
    `rule` (WARMUP_RULES), then a half cosine from `peak` to `floor` x `peak` at `total_iters`
    (floor + (1 - floor) (1 + cos) / 2 of the peak: SwAV's final_lr, DINO's min_lr, VISSL's
    end_value; 0 as MoCo's).

    The warm-up is written out, not fvcore's LinearParamScheduler: that one computes
    peak * ((it + 1) / warmup), which differs from the peak * (it + 1) / warmup the runs so far
    used in the last bit, and the loops must stay bit for bit what they were."""
    if not 0.0 <= floor < 1.0:
        from ..common.errors import ConfigError

        raise ConfigError(
            f"SOLVER.COSINE_FLOOR {floor}: expected a fraction of the peak lr in [0, 1)"
        )
    decay = CosineParamScheduler(peak, floor * peak)
    ramp = warmup_rule(rule)

    def value(it: int) -> float:
        if it < warmup_iters:
            if rule == "one_based":  # bit for bit the product the runs so far used
                return peak * (it + 1) / warmup_iters
            return peak * ramp(it, warmup_iters)
        return decay(min(1.0, (it - warmup_iters) / max(1, total_iters - warmup_iters)))

    return value


def warmup_steps(
    warmup_iters: int, milestones, gamma: float = 0.1, rule: str = "one_based"
) -> Callable[[int], float]:
    """As warmup_cosine with peak 1, but the warm-up is followed by a constant rate multiplied by
    `gamma` at each of `milestones` (iterations)."""
    ramp = warmup_rule(rule)

    def value(it: int) -> float:
        if it < warmup_iters:
            return ramp(it, warmup_iters)
        return gamma ** sum(it >= m for m in milestones)

    return value


def warmup_cosine_lr(
    optimizer: torch.optim.Optimizer, warmup_iters: int, total_iters: int, peak: float = 1.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Each group's lr = its initial lr x warmup_cosine(peak, ...)(iteration); step once per
    iteration. Pretraining passes peak 1 (a multiplier of SGD's lr); the supervised baseline gives
    SGD lr 1 and the peak here, so each keeps its own rounding of the product."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(peak, warmup_iters, total_iters)
    )


def multistep_lr(
    optimizer: torch.optim.Optimizer, milestones, gamma: float
) -> torch.optim.lr_scheduler.MultiStepLR:
    """lr x gamma at each milestone (epochs; step once per epoch), the linear readout's recipe."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma)
