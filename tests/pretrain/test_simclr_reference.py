"""Our SimCLR stepped side by side with a minimal independent implementation of the paper's
Algorithm 1 (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations"), in float64, for three LARS steps on the same batches.

The reference below is written from the paper, not from pretrain/: the 2N augmented examples are
interleaved as in Algorithm 1 (2k-1 and 2k the two views of image k) and encoded as one batch
(the release's BN spans both views), z = g(f(x)) with g the 2-layer projection MLP with BN (the
last BN with a scale and no shift, as the release builds it), s_ij = cosine similarity,
l(i, j) = -log exp(s_ij / T) / sum_{k != i} exp(s_ik / T),
L = 1 / N sum_k [l(2k-1, 2k) + l(2k, 2k-1)]: the release's loss_a + loss_b, the two directions'
batch means summed (the paper's Algorithm 1 writes 1 / 2N; under LARS the factor matters for the
biases and BN, which LARS does not rescale), then a LARS step (biases and BN excluded). The
networks start as the release draws them: each residual block's last BN scale at 0, the convs by
TF's variance scaling, the head's Linear layers N(0, 0.01) (reference_parts.release_law_)."""

from __future__ import annotations

import torch

from tests.pretrain.reference_parts import (
    BATCH,
    FEAT_DIM,
    HIDDEN,
    LR,
    ReferenceOptimizer,
    assert_same,
    batches,
    start_from_the_release,
    mlp,
    network,
    project,
    trainer_step,
)

T = 0.2


class ReferenceSimCLR:
    def __init__(self):
        self.f_g = network(
            mlp([512, HIDDEN, FEAT_DIM], last="scale"), zero_init_residual=True, framework="tf"
        )
        self.optimizer = ReferenceOptimizer(lars=True)

    def step(self, x1: torch.Tensor, x2: torch.Tensor) -> float:
        n = len(x1)
        x = torch.stack([x1, x2], dim=1).flatten(0, 1)  # x[2k], x[2k + 1]: the views of image k
        z = self.f_g["head"](self.f_g["backbone"](x))
        s = torch.nn.functional.cosine_similarity(z.unsqueeze(1), z.unsqueeze(0), dim=2)

        def pair_loss(i: int, j: int) -> torch.Tensor:  # l(i, j) of the module docstring
            others = torch.cat([s[i, :i], s[i, i + 1 :]])
            return -(s[i, j] / T - torch.logsumexp(others / T, dim=0))

        loss = sum(pair_loss(2 * k, 2 * k + 1) + pair_loss(2 * k + 1, 2 * k) for k in range(n)) / n
        params = list(self.f_g.parameters())
        self.optimizer.step(params, torch.autograd.grad(loss, params), [LR] * len(params))
        return loss.item()


def test_simclr_steps_like_algorithm_1_of_the_paper():
    model, optimizer, scheduler = project(
        "simclr",
        "MODEL.TEMPERATURE",
        str(T),
        "SOLVER.OPTIMIZER",
        "lars",
        "MODEL.ZERO_INIT_RESIDUAL",
        "True",
        "MODEL.INIT",
        "tf",
    )
    assert model.num_negatives(BATCH) == 2 * BATCH - 2
    reference = ReferenceSimCLR()
    start_from_the_release(model.query_encoder, reference.f_g, "f_g")
    for step, (x1, x2) in enumerate(batches(3)):
        loss = trainer_step(model, optimizer, scheduler, x1, x2)
        assert abs(loss - reference.step(x1, x2)) <= 1e-6, f"step {step}: loss"
        assert_same(model.query_encoder, reference.f_g, "encoder", step + 1)
