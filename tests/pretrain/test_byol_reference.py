"""Our BYOL stepped side by side with a minimal independent implementation of the paper's
Algorithm 1 (Grill et al. 2020, "Bootstrap Your Own Latent"), in float64, for three LARS steps
of a four-step run on the same batches, the learning rate and tau both on their schedules.

The reference below is written from the paper, not from pretrain/: online network f_theta,
projector g_theta (Linear - BN - ReLU - Linear, App. A), predictor q_theta (same architecture),
each ending in a Linear without a bias as the release builds them (byol/utils/networks.py MLP:
hk.Linear(output_size, with_bias=False)); the release's first Linear has a zero-initialised bias,
which the BN after it makes inert (no effect on the output, zero gradient), so it is left out;
target f_xi, g_xi starting as copies of the online ones. Per batch: z = g_theta(f_theta(v)),
z' = g_xi(f_xi(v')) and symmetrically; the loss l = -2/B sum [<q(z), z'> / (|q(z)| |z'|) +
<q(z~'), z~> / ...] of Algorithm 1, which is our symmetric Eq. 2 loss minus 4; a LARS step on
theta with the cosine rate eta_k (biases, BN excluded, App. A); then
xi <- tau_k xi + (1 - tau_k) theta with tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2
(Sec. 3.2), k the step just taken (0 first)."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from tests.pretrain.reference_parts import (FEAT_DIM, HIDDEN, PRED_HIDDEN, ReferenceOptimizer,
                                            assert_same, batches, cosine_lr, load_into, mlp,
                                            network, project, trainer_step)

TAU_BASE, TOTAL = 0.9, 4  # tau_base far from 1 and a short run, so that the schedule shows


class ReferenceBYOL:
    def __init__(self):
        self.online = network(mlp([512, HIDDEN, FEAT_DIM], last="none", last_bias=False))
        self.predictor = mlp([FEAT_DIM, PRED_HIDDEN, FEAT_DIM], last="none",
                             last_bias=False).double()
        self.target = None  # a copy of the online network once its weights are loaded
        self.optimizer = ReferenceOptimizer(lars=True)
        self.k = 0

    def start(self) -> None:
        self.target = copy.deepcopy(self.online)

    @staticmethod
    def project(net, v: torch.Tensor) -> torch.Tensor:
        return net["head"](net["backbone"](v))

    def step(self, v: torch.Tensor, v_prime: torch.Tensor) -> float:
        q, q_tilde = (self.predictor(self.project(self.online, x)) for x in (v, v_prime))
        with torch.no_grad():  # v first: the order the target's BN running statistics see
            z_tilde, z_prime = self.project(self.target, v), self.project(self.target, v_prime)
        b = len(v)
        loss = -2 / b * (F.cosine_similarity(q, z_prime).sum()
                         + F.cosine_similarity(q_tilde, z_tilde).sum())
        params = list(self.online.parameters()) + list(self.predictor.parameters())
        rate = cosine_lr(self.k, TOTAL)
        self.optimizer.step(params, torch.autograd.grad(loss, params), [rate] * len(params))
        tau = 1 - (1 - TAU_BASE) * (math.cos(math.pi * self.k / TOTAL) + 1) / 2
        with torch.no_grad():
            for xi, theta in zip(self.target.parameters(), self.online.parameters()):
                xi.copy_(tau * xi + (1 - tau) * theta)
        self.k += 1
        return loss.item()


def test_byol_steps_like_algorithm_1_of_the_paper():
    model, optimizer, scheduler = project(
        "byol", "MODEL.MOMENTUM", str(TAU_BASE), "MODEL.MOMENTUM_COSINE", "True",
        "SOLVER.OPTIMIZER", "lars", total_iters=TOTAL)
    reference = ReferenceBYOL()
    load_into(reference.online, model.query_encoder)
    load_into(reference.predictor, model.predictor)
    reference.start()
    for step, (v, v_prime) in enumerate(batches(3)):
        loss = trainer_step(model, optimizer, scheduler, v, v_prime)
        assert abs(loss - 4 - reference.step(v, v_prime)) <= 1e-6, f"step {step}: loss"
        assert_same(model.query_encoder, reference.online, "online", step + 1)
        assert_same(model.predictor, reference.predictor, "predictor", step + 1)
        assert_same(model.key_encoder, reference.target, "target", step + 1)
    assert int(model.momentum_schedule.step) == 3
