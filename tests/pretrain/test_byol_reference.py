"""Our BYOL stepped side by side with a minimal independent implementation of the paper's
Algorithm 1 (Grill et al. 2020, "Bootstrap Your Own Latent"), in float64, for three LARS steps
of a four-step run on the same batches, the learning rate and tau both on their schedules.

The reference below is written from the paper, not from pretrain/: online network f_theta,
projector g_theta (Linear - BN - ReLU - Linear, App. A), predictor q_theta (same architecture),
each ending in a Linear without a bias as the release builds them (byol/utils/networks.py MLP:
hk.Linear(output_size, with_bias=False)); the release's first Linear has a zero-initialised bias,
which the BN after it makes inert (no effect on the output, zero gradient), so it is left out;
target f_xi, g_xi starting as copies of the online ones. Every conv and Linear weight starts
from haiku's default TruncatedNormal(1 / sqrt(fan_in)), the biases at 0; haiku's ResNet zeroes
the last BN scale of bottleneck blocks only, so this ResNet-18 keeps its ones. Per batch:
z = g_theta(f_theta(v)), z' = g_xi(f_xi(v')) and symmetrically; the loss
l = -2/B sum [<q(z), z'> / (|q(z)| |z'|) + <q(z~'), z~> / ...] of Algorithm 1, which is our
symmetric Eq. 2 loss minus 4; a LARS step on
theta with the cosine rate eta_k (biases, BN excluded, App. A); then
xi <- tau_k xi + (1 - tau_k) theta with tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2
(Sec. 3.2), k the step just taken (0 first).

BYOL-ER (Rodríguez-Gálvez et al. 2023) on the same reference: the loss is, over both
directions, the release's vMF reconstruction of z' from q (both normalised) minus w times the
release's vMF entropy of the online projections z (tests/pretrain/reference_er.py, the
constant without the release's +1e-7, which at 8 dimensions moves no digit that matters)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from tests.pretrain.reference_parts import (
    FEAT_DIM,
    HIDDEN,
    PRED_HIDDEN,
    ReferenceOptimizer,
    assert_same,
    batches,
    cosine_lr,
    start_from_the_release,
    mlp,
    network,
    release_law_,
    project,
    trainer_step,
)
from tests.pretrain.reference_er import release_entropy, release_reconstruction

TAU_BASE, TOTAL = 0.9, 4  # tau_base far from 1 and a short run, so that the schedule shows
KAPPA, ENTROPY_WEIGHT = 4.0, 0.7  # not the defaults, so that each must be read


class ReferenceBYOL:
    def __init__(self, er: bool = False):
        self.er = er
        self.online = network(
            mlp([512, HIDDEN, FEAT_DIM], last="none", last_bias=False), framework="haiku"
        )
        self.predictor = release_law_(
            mlp([FEAT_DIM, PRED_HIDDEN, FEAT_DIM], last="none", last_bias=False), "haiku"
        ).double()
        self.target = None  # a copy of the online network once its weights are loaded
        self.optimizer = ReferenceOptimizer(lars=True)
        self.k = 0

    def start(self) -> None:
        self.target = copy.deepcopy(self.online)

    @staticmethod
    def project(net, v: torch.Tensor) -> torch.Tensor:
        return net["head"](net["backbone"](v))

    def step(self, v: torch.Tensor, v_prime: torch.Tensor) -> float:
        z, z_online_prime = self.project(self.online, v), self.project(self.online, v_prime)
        q, q_tilde = self.predictor(z), self.predictor(z_online_prime)
        with torch.no_grad():  # v first: the order the target's BN running statistics see
            z_tilde, z_prime = self.project(self.target, v), self.project(self.target, v_prime)
        b = len(v)
        if self.er:

            def unit(x):
                return F.normalize(x, dim=1)

            rec = sum(
                release_reconstruction(unit(a), unit(t), "sphere", KAPPA, with_eps=False)
                for a, t in ((q, z_prime), (q_tilde, z_tilde))
            )
            h = sum(
                release_entropy(unit(y), "sphere", KAPPA, with_eps=False)
                for y in (z, z_online_prime)
            )
            loss = rec - ENTROPY_WEIGHT * h
        else:
            loss = (
                -2
                / b
                * (
                    F.cosine_similarity(q, z_prime).sum()
                    + F.cosine_similarity(q_tilde, z_tilde).sum()
                )
            )
        params = list(self.online.parameters()) + list(self.predictor.parameters())
        rate = cosine_lr(self.k, TOTAL)
        self.optimizer.step(params, torch.autograd.grad(loss, params), [rate] * len(params))
        tau = 1 - (1 - TAU_BASE) * (math.cos(math.pi * self.k / TOTAL) + 1) / 2
        with torch.no_grad():
            for xi, theta in zip(self.target.parameters(), self.online.parameters()):
                xi.copy_(tau * xi + (1 - tau) * theta)
        self.k += 1
        return loss.item()


@pytest.mark.parametrize("er", [False, True], ids=["byol", "byol-er"])
def test_byol_steps_like_algorithm_1_of_the_paper(er):
    er_opts = (
        [
            "MODEL.ER.OBJECTIVE",
            "True",
            "MODEL.ER.KAPPA",
            str(KAPPA),
            "MODEL.ER.ENTROPY_WEIGHT",
            str(ENTROPY_WEIGHT),
        ]
        if er
        else []
    )
    model, optimizer, scheduler = project(
        "byol",
        "MODEL.MOMENTUM",
        str(TAU_BASE),
        "MODEL.MOMENTUM_COSINE",
        "True",
        "SOLVER.OPTIMIZER",
        "lars",
        "MODEL.INIT",
        "haiku",
        *er_opts,
        total_iters=TOTAL,
    )
    reference = ReferenceBYOL(er)
    start_from_the_release(model.query_encoder, reference.online, "online", model.key_encoder)
    start_from_the_release(model.predictor, reference.predictor, "predictor")
    reference.start()
    for step, (v, v_prime) in enumerate(batches(3)):
        loss = trainer_step(model, optimizer, scheduler, v, v_prime)
        offset = 0 if er else 4  # Algorithm 1's loss is our Eq. 2 sum minus 4
        assert abs(loss - offset - reference.step(v, v_prime)) <= 1e-6, f"step {step}: loss"
        assert_same(model.query_encoder, reference.online, "online", step + 1)
        assert_same(model.predictor, reference.predictor, "predictor", step + 1)
        assert_same(model.key_encoder, reference.target, "target", step + 1)
    assert int(model.momentum_schedule.step) == 3
