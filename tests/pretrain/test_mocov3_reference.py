"""Our MoCo v3 (ResNet) stepped side by side with a minimal independent implementation of the
paper's Algorithm 1 (Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision
Transformers"), in float64, for three LARS steps on the same batches.

The reference below is written from the paper, not from pretrain/: f_q = backbone + projection
MLP + prediction MLP, f_k = backbone + projection MLP (momentum copy). Per batch:
q1, q2 = f_q(x1), f_q(x2); k1, k2 = f_k(x1), f_k(x2) (no gradient);
loss = ctr(q1, k2) + ctr(q2, k1), ctr(q, k) = CrossEntropy(normalize(q) normalize(k)^T / T,
arange(N)) * 2T; a LARS step on f_q. Algorithm 1 keeps m constant; the ResNet recipes anneal it
to 1 by a half cosine, m_k = 1 - (1 - m)(cos(pi k / K) + 1) / 2 for iteration k (0-based), and
the release (main_moco.py, moco/builder.py) updates f_k <- m_k f_k + (1 - m_k) f_q at the START
of iteration k, before computing its keys; both are checked. MLPs as the release builds them for
ResNet: Linear without bias, BN + ReLU between, an affine-free BN after the projector's output,
none after the predictor's."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from tests.pretrain.reference_parts import (
    BATCH,
    FEAT_DIM,
    HIDDEN,
    LR,
    PRED_HIDDEN,
    ReferenceOptimizer,
    assert_same,
    batches,
    start_from_the_release,
    mlp,
    network,
    project,
    trainer_step,
)

M, T, TOTAL = 0.9, 0.5, 4


class ReferenceMoCoV3:
    def __init__(self, cosine: bool):
        self.f_q = network(mlp([512, HIDDEN, FEAT_DIM], last="plain"), zero_init_residual=True)
        self.predictor = mlp(
            [FEAT_DIM, PRED_HIDDEN, FEAT_DIM], last="none", last_bias=False
        ).double()
        self.f_k = None
        self.cosine = cosine
        self.optimizer = ReferenceOptimizer(lars=True)
        self.k = 0

    def start(self) -> None:
        self.f_k = copy.deepcopy(self.f_q)

    @staticmethod
    def ctr(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).t()
        return F.cross_entropy(logits / T, torch.arange(len(q))) * 2 * T

    def momentum(self, k: int) -> float:
        return 1 - (1 - M) * (math.cos(math.pi * k / TOTAL) + 1) / 2 if self.cosine else M

    @staticmethod
    @torch.no_grad()
    def momentum_update(f_k, f_q, m: float) -> None:
        for p_k, p_q in zip(f_k.parameters(), f_q.parameters()):
            p_k.copy_(m * p_k + (1 - m) * p_q)

    def step(self, x1: torch.Tensor, x2: torch.Tensor) -> float:
        self.momentum_update(self.f_k, self.f_q, self.momentum(self.k))  # iteration k's start
        q1, q2 = (self.predictor(self.f_q["head"](self.f_q["backbone"](x))) for x in (x1, x2))
        with torch.no_grad():
            k1, k2 = (self.f_k["head"](self.f_k["backbone"](x)) for x in (x1, x2))
        loss = self.ctr(q1, k2) + self.ctr(q2, k1)
        params = list(self.f_q.parameters()) + list(self.predictor.parameters())
        self.optimizer.step(params, torch.autograd.grad(loss, params), [LR] * len(params))
        self.k += 1
        return loss.item()

    def next_key_encoder(self):
        """f_k as the next iteration will compute its keys with (after its opening update)."""
        f_k = copy.deepcopy(self.f_k)
        self.momentum_update(f_k, self.f_q, self.momentum(self.k))
        return f_k


@pytest.mark.parametrize("cosine", [False, True])
def test_mocov3_steps_like_algorithm_1_of_the_paper(cosine):
    model, optimizer, scheduler = project(
        "mocov3",
        "MODEL.MOMENTUM",
        str(M),
        "MODEL.TEMPERATURE",
        str(T),
        "MODEL.MOMENTUM_COSINE",
        str(cosine),
        "SOLVER.OPTIMIZER",
        "lars",
        "MODEL.ZERO_INIT_RESIDUAL",
        "True",
    )
    if cosine:
        model.start_run(0, 1, TOTAL)
    assert model.num_negatives(BATCH) == BATCH - 1
    reference = ReferenceMoCoV3(cosine)
    start_from_the_release(model.query_encoder, reference.f_q, "f_q", model.key_encoder)
    start_from_the_release(model.predictor, reference.predictor, "predictor")
    reference.start()
    for step, (x1, x2) in enumerate(batches(3)):
        loss = trainer_step(model, optimizer, scheduler, x1, x2)
        assert abs(loss - reference.step(x1, x2)) <= 1e-6, f"step {step}: loss"
        assert_same(model.query_encoder, reference.f_q, "query", step + 1)
        assert_same(model.predictor, reference.predictor, "predictor", step + 1)
        # Ours moves the key encoder after the step, the release before the next keys.
        assert_same(model.key_encoder, reference.next_key_encoder(), "key", step + 1)
