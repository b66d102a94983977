"""The entropy-and-reconstruction (ER) bound on the mutual information of two views
(Rodríguez-Gálvez et al., ICML 2023, "The Role of Entropy and Reconstruction in Multi-View
Self-Supervised Learning"):

    I(Z1; Z2) >= H(Z2) - E[-log q(Z2 | Z1)] = I_ER,

entropy (how much can be learnt) minus reconstruction error (how much is learnt), with the
estimators of the authors' release (github:apple/ml-entropy-reconstruction,
`entropy_reconstruction.py`), one per support:

- "sphere": L2-normalised embeddings on S^{d-1}. H by a von Mises-Fisher kernel density
  estimate over the batch, p(z_i) = 1/k sum_j C_d(kappa) exp(kappa z_i . z_j) (plug-in: the
  release's default "expectation" reduction weighs each -log p(z_i) by p(z_i) / sum_j p(z_j));
  q(z2 | z1) a vMF centred at z1, so Rec = -kappa z1 . z2 - log C_d(kappa).
- "discrete": rows of probabilities over K outcomes (SwAV's codes, DINO's softmax). H of the
  batch's mean distribution; Rec the symmetric cross-entropy 1/2 (CE(p1, p2) + CE(p2, p1)).

One deliberate deviation, named: the release takes log(I_v(kappa) + 1e-7) for the vMF constant,
which at d = 128 is log(1e-7) (I_63(10) is about 5e-44); we take log I_v(kappa) itself. H and
Rec then each differ from the release's by the same constant and I_ER = H - Rec is identical.
All values are in nats; the sphere's H depends on kappa and on the batch (k = its size)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

SPHERE, DISCRETE = "sphere", "discrete"
EPS = 1e-7  # the release's, inside the discrete logarithms


def log_bessel_iv(order: float, x: float) -> float:
    """log I_order(x), the modified Bessel function of the first kind, from its power series
    sum_m (x/2)^(2m + order) / (m! Gamma(m + order + 1)) summed in log space (torch has only
    orders 0 and 1; scipy is not a dependency). Exact to float64 for the kappas used here."""
    if x <= 0:
        raise ValueError(f"log_bessel_iv: x must be positive, got {x}")
    log_half = math.log(x / 2)
    terms = []
    for m in range(10_000):
        terms.append((2 * m + order) * log_half - math.lgamma(m + 1) - math.lgamma(m + order + 1))
        # past the largest term (m ~ x/2) each next one shrinks by (x/2)^2 / ((m+1)(m+order+1))
        if m > x and terms[-1] < max(terms) - 60:
            break
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def log_vmf_normaliser(dim: int, kappa: float) -> float:
    """log C_d(kappa) = (d/2 - 1) log kappa - (d/2) log 2 pi - log I_{d/2-1}(kappa): the vMF
    density on S^{d-1} is C_d(kappa) exp(kappa mu . z)."""
    return (
        (dim / 2 - 1) * math.log(kappa)
        - dim / 2 * math.log(2 * math.pi)
        - log_bessel_iv(dim / 2 - 1, kappa)
    )


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """kappa z.z' and log-sum-exps over the batch in float32 at least, even under autocast (its
    own copy of losses.at_least_float32: the two modules sit side by side in one layer)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def entropy(embeddings: torch.Tensor, support: str, kappa: float) -> torch.Tensor:
    """H of a batch (k, d): L2-normalised rows ("sphere") or probability rows ("discrete")."""
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        return _entropy(at_least_float32(embeddings), support, kappa)


def _entropy(embeddings: torch.Tensor, support: str, kappa: float) -> torch.Tensor:
    if support == SPHERE:
        k, d = embeddings.shape
        neg_log_p = (
            -torch.logsumexp(kappa * embeddings @ embeddings.t(), dim=1)
            + math.log(k)
            - log_vmf_normaliser(d, kappa)
        )
        return (F.softmax(-neg_log_p, dim=0) * neg_log_p).sum()
    if support == DISCRETE:
        mean = embeddings.mean(dim=0)
        return -(mean * torch.log(mean + EPS)).sum()
    raise ValueError(f"unknown support {support!r}")


def reconstruction(
    source: torch.Tensor, target: torch.Tensor, support: str, kappa: float
) -> torch.Tensor:
    """E[-log q(target | source)] over the batch's pairs (rows)."""
    with torch.autocast(device_type=source.device.type, enabled=False):
        return _reconstruction(at_least_float32(source), at_least_float32(target), support, kappa)


def _reconstruction(
    source: torch.Tensor, target: torch.Tensor, support: str, kappa: float
) -> torch.Tensor:
    if support == SPHERE:
        d = source.shape[1]
        return (-kappa * (source * target).sum(dim=1) - log_vmf_normaliser(d, kappa)).mean()
    if support == DISCRETE:
        forward = -(source * torch.log(target + EPS)).sum(dim=1)
        backward = -(target * torch.log(source + EPS)).sum(dim=1)
        return (0.5 * (forward + backward)).mean()
    raise ValueError(f"unknown support {support!r}")


class ERPair(NamedTuple):
    """What a method's step shows the ER monitor (models/method.py StepOutput.er): the support,
    the reconstructing side and the reconstructed side, both detached by the method."""

    support: str
    source: torch.Tensor
    target: torch.Tensor

    def measure(self, kappa: float) -> tuple[float, float]:
        """(H(target), Rec(target | source)) in float64: the monitor's numbers."""
        source, target = self.source.detach().double(), self.target.detach().double()
        return (
            float(entropy(target, self.support, kappa)),
            float(reconstruction(source, target, self.support, kappa)),
        )


class ERObjective(NamedTuple):
    """The ER variants' loss (MODEL.ER.OBJECTIVE): Rec - entropy_weight * H, the ER bound
    maximised directly (the paper's BYOL-ER, DINO-ER, SwAV-ER)."""

    kappa: float
    entropy_weight: float

    @classmethod
    def from_cfg(cls, cfg) -> "ERObjective | None":
        er = cfg.MODEL.ER
        return cls(er.KAPPA, er.ENTROPY_WEIGHT) if er.OBJECTIVE else None

    def loss(self, rec: torch.Tensor, entropy_value: torch.Tensor) -> torch.Tensor:
        return rec - self.entropy_weight * entropy_value
