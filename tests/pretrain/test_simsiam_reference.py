"""Our SimSiam stepped side by side with a minimal independent implementation of the paper's
Algorithm 1 (Chen & He 2021, "Exploring Simple Siamese Representation Learning"), in float64, for
three SGD steps of a four-step cosine schedule on the same batches.

The reference below is written from the paper, not from pretrain/: f = backbone + 3-layer
projection MLP (BN on every fc, the output fc's BN without ReLU, Sec. 4.1), h = 2-layer
bottleneck predictor (its output fc without BN). Per batch: z1, z2 = f(x1), f(x2);
p1, p2 = h(z1), h(z2); L = D(p1, z2) / 2 + D(p2, z1) / 2 with D(p, z) = -cos(p, z.detach());
an SGD step (momentum 0.9, weight decay) whose rate follows the cosine schedule for f and stays
at its base value for h (Table 1, last row: the predictor with a fixed learning rate). No
momentum encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.pretrain.reference_parts import (
    FEAT_DIM,
    HIDDEN,
    LR,
    PRED_HIDDEN,
    ReferenceOptimizer,
    assert_same,
    batches,
    cosine_lr,
    start_from_the_release,
    mlp,
    network,
    project,
    trainer_step,
)

TOTAL = 4


def D(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    z = z.detach()
    return -(F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1).mean()


class ReferenceSimSiam:
    def __init__(self):
        self.f = network(
            mlp([512, HIDDEN, HIDDEN, FEAT_DIM], last="plain"), zero_init_residual=True
        )
        self.h = mlp([FEAT_DIM, PRED_HIDDEN, FEAT_DIM], last="none").double()
        self.optimizer = ReferenceOptimizer(lars=False)
        self.k = 0

    def step(self, x1: torch.Tensor, x2: torch.Tensor) -> float:
        z1, z2 = (self.f["head"](self.f["backbone"](x)) for x in (x1, x2))
        p1, p2 = self.h(z1), self.h(z2)
        loss = D(p1, z2) / 2 + D(p2, z1) / 2
        f_params, h_params = list(self.f.parameters()), list(self.h.parameters())
        grads = torch.autograd.grad(loss, f_params + h_params)
        rates = [cosine_lr(self.k, TOTAL)] * len(f_params) + [LR] * len(h_params)
        self.optimizer.step(f_params + h_params, grads, rates)
        self.k += 1
        return loss.item()


def test_simsiam_steps_like_algorithm_1_of_the_paper():
    model, optimizer, scheduler = project(
        "simsiam",
        "MODEL.HEAD_HIDDEN_DIM",
        str(HIDDEN),
        "SOLVER.PREDICTOR_FIXED_LR",
        "True",
        "MODEL.ZERO_INIT_RESIDUAL",
        "True",
        total_iters=TOTAL,
    )
    assert not hasattr(model, "key_encoder")  # no momentum encoder
    reference = ReferenceSimSiam()
    start_from_the_release(model.query_encoder, reference.f, "f")
    start_from_the_release(model.predictor, reference.h, "h")
    for step, (x1, x2) in enumerate(batches(3)):
        loss = trainer_step(model, optimizer, scheduler, x1, x2)
        assert abs(loss - reference.step(x1, x2)) <= 1e-6, f"step {step}: loss"
        assert_same(model.query_encoder, reference.f, "encoder", step + 1)
        assert_same(model.predictor, reference.h, "predictor", step + 1)
