"""The ER estimators as the authors' release computes them (github:apple/ml-entropy-reconstruction,
entropy_reconstruction.py: `entropy` with its default "expectation" reduction, `reconstruction`),
written here from that code's formulas for the reference side of the tests, independently of
pretrain/entropy_reconstruction.py. The release takes I_v(kappa) from scipy; scipy is not a
dependency here, so the reference integrates Bessel's integral numerically instead of summing
the series pretrain/ uses:
    I_v(x) = (x/2)^v / (sqrt(pi) Gamma(v + 1/2)) int_0^pi exp(x cos t) sin(t)^(2v) dt."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

RELEASE_EPS = 1e-7


def bessel_iv(order: float, x: float, points: int = 200_001) -> float:
    t = torch.linspace(0, math.pi, points, dtype=torch.float64)
    integrand = torch.exp(x * torch.cos(t)) * torch.sin(t) ** (2 * order)
    integral = torch.trapezoid(integrand, t).item()
    return (x / 2) ** order / (math.sqrt(math.pi) * math.gamma(order + 0.5)) * integral


def release_vmf_constant(d: int, kappa: float, with_eps: bool = True) -> float:
    """The release's `const` without the log k: -log C_d(kappa), with its +1e-7 in the log."""
    iv = bessel_iv(0.5 * d - 1, kappa)
    return (
        -math.log(kappa) * (d * 0.5 - 1)
        + 0.5 * d * math.log(2 * math.pi)
        + math.log(iv + (RELEASE_EPS if with_eps else 0.0))
    )


def release_entropy(
    embeddings: torch.Tensor, support: str, kappa: float = 10.0, with_eps: bool = True
) -> torch.Tensor:
    k, d = embeddings.shape
    if support == "sphere":
        csim = kappa * embeddings @ embeddings.T
        logp = (
            -torch.logsumexp(csim, dim=-1) + release_vmf_constant(d, kappa, with_eps) + math.log(k)
        )
        return (F.softmax(-logp, dim=-1) * logp).sum()
    mean = embeddings.mean(0)
    return -(mean * torch.log(mean + RELEASE_EPS)).sum()


def release_reconstruction(
    p1: torch.Tensor, p2: torch.Tensor, support: str, kappa: float = 10.0, with_eps: bool = True
) -> torch.Tensor:
    d = p1.shape[1]
    if support == "sphere":
        rec = -kappa * (p1 * p2).sum(dim=-1) + release_vmf_constant(d, kappa, with_eps)
    else:
        rec = 0.5 * (
            -(p1 * torch.log(p2 + RELEASE_EPS)).sum(dim=-1)
            - (p2 * torch.log(p1 + RELEASE_EPS)).sum(dim=-1)
        )
    return rec.mean()
