"""The optimizer a config asks for (SOLVER.OPTIMIZER): SGD as MoCo's recipes, LARS as SimCLR's,
BYOL's and MoCo v3's, or LARC as SwAV's; the parameter groups (biases and norms without weight
decay where a release leaves them out); and the per-group learning-rate factors of the schedule
(SimSiam keeps its predictor's learning rate fixed)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..common.errors import ConfigError


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling (You, Gitman, Ginsburg 2017) as the self-supervised
    releases compute it: per tensor, d = grad + wd * w, scaled by the trust ratio
    eta * ||w|| / ||d|| (1 where either norm is 0), then heavy-ball momentum and the learning
    rate, the rate outside the momentum buffer (MoCo v3's and BYOL's order; SimCLR's TF version
    puts it inside, which differs only while the rate changes). A group with `adapt` False is
    plain SGD with momentum and its own weight decay: the papers exclude biases and BN parameters
    from both (BYOL App. A says so; SimCLR's and MoCo v3's releases do the same; parameter_groups
    below does it)."""

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        adapt: bool = True,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            adapt=adapt,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=group["weight_decay"])
                if group["adapt"]:
                    w_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    ratio = torch.where(
                        (w_norm > 0) & (d_norm > 0),
                        group["trust_coefficient"] * w_norm / d_norm,
                        torch.ones_like(w_norm),
                    )
                    d = d.mul_(ratio)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


class LARC(torch.optim.Optimizer):
    """Layer-wise adaptive rate control as SwAV's release runs it (NVIDIA apex's LARC with
    clip=False around SGD with momentum 0.9, all parameters in one group). It differs from LARS
    above in two places: every parameter is adapted and decayed, biases and BN included; and the
    trust ratio divides by ||g|| + wd ||w|| + eps, the raw gradient's norm plus the decay's, not by
    the norm of their sum. Where ||w|| or ||g|| is 0 the gradient goes on unscaled and undecayed.
    Then heavy-ball momentum (the first buffer the step itself) and the rate, as torch's SGD."""

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
    ):
        super().__init__(
            params,
            dict(
                lr=lr,
                momentum=momentum,
                weight_decay=weight_decay,
                trust_coefficient=trust_coefficient,
                eps=eps,
            ),
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            wd, eta = group["weight_decay"], group["trust_coefficient"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(p.grad)
                adapted = (w_norm != 0) & (g_norm != 0)
                ratio = torch.where(
                    adapted,
                    eta * w_norm / (g_norm + w_norm * wd + group["eps"]),
                    torch.ones_like(w_norm),
                )
                decay = torch.where(adapted, wd, 0.0)  # apex decays only what it adapts
                d = (p.grad + decay * p) * ratio
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


OPTIMIZERS = ("sgd", "lars", "larc", "adam")


def parameter_groups(cfg, model: nn.Module) -> list[dict]:
    """The trainable parameters in groups. SGD without SOLVER.PREDICTOR_FIXED_LR: one group of
    all of them (MoCo's recipes, unchanged). LARS, or SOLVER.DECAY_BIAS_AND_NORM False (DINO's
    release): biases and BN parameters (tensors of one dimension) in a group without weight decay
    (and, under LARS, without adaptation). LARC (SwAV's release) adapts every parameter.
    SOLVER.PREDICTOR_FIXED_LR: the predictor's parameters in groups marked `fixed_lr` (SimSiam
    Table 1, last row)."""
    s = cfg.SOLVER
    predictor = getattr(model, "predictor", None)
    if s.PREDICTOR_FIXED_LR and predictor is None:
        raise ConfigError(
            f"SOLVER.PREDICTOR_FIXED_LR: MODEL.METHOD {cfg.MODEL.METHOD} has no predictor"
        )
    in_predictor = (
        {id(p) for p in predictor.parameters()}
        if s.PREDICTOR_FIXED_LR and predictor is not None
        else set()
    )
    groups: dict[tuple[bool, bool], list] = {}
    for p in model.parameters():
        if p.requires_grad:
            excluded = p.ndim <= 1 and (s.OPTIMIZER == "lars" or not s.DECAY_BIAS_AND_NORM)
            groups.setdefault((id(p) in in_predictor, excluded), []).append(p)
    result = []
    for (fixed, excluded), params in groups.items():
        group = {"params": params}
        if excluded:
            group.update(weight_decay=0.0, adapt=False)
        if fixed:
            group["fixed_lr"] = True
        result.append(group)
    return result


def build_solver(cfg, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """SOLVER.OPTIMIZER over parameter_groups, at learning rate `lr` (already batch-scaled)."""
    s = cfg.SOLVER
    groups = parameter_groups(cfg, model)
    if s.OPTIMIZER == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=s.MOMENTUM, weight_decay=s.WEIGHT_DECAY)
    if s.OPTIMIZER == "lars":
        return LARS(
            groups,
            lr=lr,
            momentum=s.MOMENTUM,
            weight_decay=s.WEIGHT_DECAY,
            trust_coefficient=s.LARS_TRUST_COEFFICIENT,
        )
    if s.OPTIMIZER == "larc":
        for group in groups:
            group.pop("adapt", None)
        return LARC(
            groups,
            lr=lr,
            momentum=s.MOMENTUM,
            weight_decay=s.WEIGHT_DECAY,
            trust_coefficient=s.LARS_TRUST_COEFFICIENT,
        )
    if s.OPTIMIZER == "adam":  # AMDIM's release: Adam with L2 decay in the gradient
        return torch.optim.Adam(
            groups, lr=lr, betas=tuple(s.ADAM_BETAS), eps=s.ADAM_EPS, weight_decay=s.WEIGHT_DECAY
        )
    raise ConfigError(f"SOLVER.OPTIMIZER {s.OPTIMIZER!r}: expected one of {OPTIMIZERS}")


def _fixed(iteration: int) -> float:
    return 1.0


def group_lr_factors(
    optimizer: torch.optim.Optimizer, schedule: Callable[[int], float]
) -> list[Callable[[int], float]]:
    """One LambdaLR factor per group: `schedule`, or 1 for a `fixed_lr` group."""
    return [_fixed if group.get("fixed_lr") else schedule for group in optimizer.param_groups]
