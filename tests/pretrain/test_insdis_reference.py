"""Our InsDis stepped side by side with a minimal independent implementation of the paper's
equations (Wu, Xiong, Yu, Lin 2018, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination", Sec. 3), in float64, for three SGD steps on the same images, bank rows and
negative draws, with either loss.

The reference below is written from the paper, not from pretrain/: v = normalise(W f(x)) (a
linear projection of the ResNet features, Sec. 3.1); for each image i, m noise samples j_k
drawn uniformly from the n bank entries (P_n = 1/n); NCE (Eq. 4-6) with P(j|v) = exp(V_j . v /
T) / Z, h = P / (P + m/n), loss_i = -log h(i, v) - sum_k log(1 - h(j_k, v)), Z estimated once
from the first batch (Eq. 7); or InfoNCE over the same 1 + m entries. After the SGD step the
seen entries become V_i <- normalise(0.5 V_i + 0.5 v_i) (Sec. 3.2).

NCE as the authors' release computes it (lemniscate.pytorch, lib/NCEAverage.py and
lib/NCECriterion.py): Z = n * the mean of exp(s / T) over all 1 + m columns of the first batch,
the image's own entry included; h = P / (P + m/n + eps) and 1 - h = (m/n) / (P + m/n + eps),
eps = 1e-7."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.pretrain.reference_parts import (
    BANK_T,
    BATCH,
    FEAT_DIM,
    LR,
    N_IMAGES,
    NEGATIVES,
    ReferenceOptimizer,
    assert_same,
    assert_same_bank,
    bank_batches,
    info_nce_terms,
    release_bank,
    start_from_the_release,
    start_from_the_release_bank,
    network,
    project,
    step_generator,
    trainer_step,
    update_bank,
)

EPS = 1e-7  # lemniscate's NCECriterion


def release_z(
    v: torch.Tensor, bank: torch.Tensor, own: torch.Tensor, negatives: torch.Tensor
) -> float:
    """NCEAverage: out = exp(bank[idx] . v / T) over idx = (own, the m noise draws); Z =
    out.mean() * n, once."""
    with torch.no_grad():
        columns = torch.cat([own.unsqueeze(1), negatives], dim=1)
        out = torch.stack([torch.exp(bank[columns[i]] @ v[i] / BANK_T) for i in range(len(v))])
        return (out.mean() * len(bank)).item()


def release_nce_terms(
    v: torch.Tensor, bank: torch.Tensor, own: torch.Tensor, negatives: torch.Tensor, z: float
) -> torch.Tensor:
    """NCECriterion per image: -log(P_own / (P_own + m Pn + eps)) - sum_k log(m Pn / (P_k + m Pn
    + eps)), P = exp(s / T) / Z, Pn = 1 / n."""
    m, n = negatives.shape[1], len(bank)
    losses = []
    for i in range(len(v)):
        p_own = torch.exp(bank[own[i]] @ v[i] / BANK_T) / z
        p_noise = torch.exp(bank[negatives[i]] @ v[i] / BANK_T) / z
        ln_own = torch.log(p_own / (p_own + m / n + EPS))
        ln_noise = torch.log((m / n) / (p_noise + m / n + EPS))
        losses.append(-ln_own - ln_noise.sum())
    return torch.stack(losses)


class ReferenceInsDis:
    def __init__(self, bank: torch.Tensor, loss: str):
        self.f = network(nn.Linear(512, FEAT_DIM))
        self.bank = bank.clone()
        self.loss, self.z = loss, None
        self.optimizer = ReferenceOptimizer(lars=False)
        self.k = 0

    def step(self, x: torch.Tensor, own: torch.Tensor) -> float:
        v = F.normalize(self.f["head"](self.f["backbone"](x)), dim=1)
        negatives = torch.randint(N_IMAGES, (BATCH, NEGATIVES), generator=step_generator(self.k))
        if self.loss == "nce":
            if self.z is None:
                self.z = release_z(v, self.bank, own, negatives)
            loss = release_nce_terms(v, self.bank, own, negatives, self.z).mean()
        else:
            loss = info_nce_terms(v, self.bank, own, negatives).mean()
        params = list(self.f.parameters())
        self.optimizer.step(params, torch.autograd.grad(loss, params), [LR] * len(params))
        update_bank(self.bank, own, v.detach())
        self.k += 1
        return loss.item()


@pytest.mark.parametrize("loss", ["nce", "infonce"])
def test_insdis_steps_like_the_papers_equations(loss):
    model, optimizer, scheduler = project(
        "insdis",
        "MODEL.HEAD",
        "linear",
        "MODEL.TEMPERATURE",
        str(BANK_T),
        "MODEL.MEMORY_BANK.NEGATIVES",
        str(NEGATIVES),
        "MODEL.MEMORY_BANK.LOSS",
        loss,
    )
    model.memory_bank.allocate(N_IMAGES)
    bank = release_bank(normalise=False)
    start_from_the_release_bank(model.memory_bank, bank)
    reference = ReferenceInsDis(bank, loss)
    start_from_the_release(model.query_encoder, reference.f, "f")
    for step, (x, own) in enumerate(bank_batches(3)):
        ours = trainer_step(model, optimizer, scheduler, x, own)
        assert abs(ours - reference.step(x, own)) <= 1e-6, f"step {step}: loss"
        assert_same(model.query_encoder, reference.f, "encoder", step + 1)
        assert_same_bank(model.memory_bank.vectors, reference.bank, step + 1)
    if loss == "nce":
        assert float(model.memory_bank.z) == pytest.approx(reference.z, rel=1e-12)
