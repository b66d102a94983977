"""Our SwAV stepped side by side with a minimal independent implementation of the paper's method
(Caron et al. 2020, "Unsupervised Learning of Visual Features by Contrasting Cluster
Assignments": Sec. 3.1 Eqs. 1-3, Sec. 3.2 multi-crop, App. A, and the pseudo-code of Algorithm 1),
in float64, for three LARC steps on the same crops: two large and two small per image.

The reference below is written from the paper, not from pretrain/: at each step the prototypes
C are normalised (Algorithm 1: "normalize prototypes"); z = g(f(x)) L2-normalised, with the
crops of one size through f as one batch and all crops through g as one (the release's grouping,
which decides BN's statistics); scores = z C^T; for each large crop t the codes
q_t = sinkhorn(scores_t) exactly as the pseudo-code writes it (exp(scores / eps), normalised,
then 3 rounds of u = row sums, Q *= r / u, Q *= c / column sums, with r = 1/K, c = 1/B, and the
columns made distributions at the end), no gradient; the loss of Eq. 1 summed over the other
crops (Sec. 3.2), -sum_k q_t log softmax(scores_v / T), averaged over the batch, the other
crops (V - 1) and the two large crops (the release's normalisation); then a step of apex's
LARC around SGD, every parameter adapted and decayed (the release's optimizer), with the
prototypes' gradient dropped during the first epoch(s) ("we freeze the prototypes during the
first epoch", App. A) - here 2 of the 3 steps, so both regimes are checked. With the queue of
App. A.1: the embeddings of the last batches of each large crop, kept from a start step on, join
the batch's scores in Sinkhorn once there are enough of them, and only the batch's codes are
used.

SwAV-ER (Rodríguez-Gálvez et al. 2023) on the same reference: the loss minus w times the
release's discrete entropy (tests/pretrain/reference_er.py) of the batch-mean
softmax(scores / T), averaged over the two large crops."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.pretrain.reference_parts import (
    BATCH,
    FEAT_DIM,
    HIDDEN,
    LR,
    ReferenceOptimizer,
    assert_same,
    start_from_the_release,
    mlp,
    network,
    project,
    trainer_step,
)
from tests.pretrain.reference_er import release_entropy

K, T, EPS, SINKHORN_ITERS, FREEZE_STEPS = 10, 0.1, 0.05, 3, 2
QUEUE_START_STEP = 1  # with a queue of one batch: filled at step 2, used at step 3
LARGE, SMALL, NUM_SMALL = 32, 16, 2


def multi_crop_batches(steps: int):
    """Per step: 2 large crops (B, 3, 32, 32) and NUM_SMALL small ones (B, 3, 16, 16)."""
    g = torch.Generator().manual_seed(2)
    return [
        [
            torch.randn(BATCH, 3, size, size, generator=g, dtype=torch.float64)
            for size in [LARGE] * 2 + [SMALL] * NUM_SMALL
        ]
        for _ in range(steps)
    ]


class ReferenceSwAV:
    def __init__(self, queue_length: int = 0, entropy_weight: float = 0.0):
        self.entropy_weight = entropy_weight  # SwAV-ER's w (0: SwAV)
        self.queue_batches = queue_length // BATCH  # App. A.1: the last batches' embeddings
        self.stored: list[list[torch.Tensor]] = [[], []]  # per large crop, oldest first
        self.net = network(mlp([512, HIDDEN, FEAT_DIM], last="none"))
        self.C = nn.Linear(FEAT_DIM, K, bias=False).double()  # one row per prototype
        self.optimizer = ReferenceOptimizer(lars=False, larc=True)  # the release's apex LARC
        self.k = 0

    @staticmethod
    def sinkhorn(scores: torch.Tensor, eps: float = EPS, niters: int = SINKHORN_ITERS):
        Q = torch.exp(scores / eps).T
        Q /= torch.sum(Q)
        K_, B = Q.shape
        r, c = torch.ones(K_, dtype=Q.dtype) / K_, torch.ones(B, dtype=Q.dtype) / B
        for _ in range(niters):
            u = torch.sum(Q, dim=1)
            Q *= (r / u).unsqueeze(1)
            Q *= (c / torch.sum(Q, dim=0)).unsqueeze(0)
        return (Q / torch.sum(Q, dim=0, keepdim=True)).T

    def step(self, crops: list[torch.Tensor]) -> float:
        with torch.no_grad():
            self.C.weight.copy_(F.normalize(self.C.weight, dim=1, p=2))
        f, g = self.net["backbone"], self.net["head"]
        features = torch.cat([f(torch.cat(crops[:2])), f(torch.cat(crops[2:]))])
        z = F.normalize(g(features), dim=1, p=2)
        scores = list((z @ self.C.weight.T).split(BATCH))
        loss = 0
        for t in (0, 1):
            with torch.no_grad():
                if self.queue_batches and len(self.stored[t]) == self.queue_batches:
                    stored = torch.cat(self.stored[t]) @ self.C.weight.T
                    q_t = self.sinkhorn(torch.cat([stored, scores[t]]))[-BATCH:]
                else:
                    q_t = self.sinkhorn(scores[t])
                if self.queue_batches and self.k >= QUEUE_START_STEP:
                    z_t = z[t * BATCH : (t + 1) * BATCH]
                    self.stored[t] = (self.stored[t] + [z_t.detach()])[-self.queue_batches :]
            others = [s for v, s in enumerate(scores) if v != t]
            loss = loss + sum(
                -(q_t * F.log_softmax(s / T, dim=1)).sum(dim=1).mean() for s in others
            ) / len(others)
        loss = loss / 2
        if self.entropy_weight:
            loss = (
                loss
                - self.entropy_weight
                * sum(release_entropy(F.softmax(scores[t] / T, dim=1), "discrete") for t in (0, 1))
                / 2
            )
        params = list(self.net.parameters()) + [self.C.weight]
        grads = list(torch.autograd.grad(loss, params))
        if self.k < FREEZE_STEPS:  # the prototypes last, so the other velocities keep their index
            params, grads = params[:-1], grads[:-1]
        self.optimizer.step(params, grads, [LR] * len(params))
        self.k += 1
        return loss.item()


@pytest.mark.parametrize(
    "queue_length, entropy_weight",
    [(0, 0.0), (BATCH, 0.0), (0, 0.7)],
    ids=["swav", "swav-queue", "swav-er"],
)
def test_swav_steps_like_the_paper(queue_length, entropy_weight):
    er_opts = (
        ["MODEL.ER.OBJECTIVE", "True", "MODEL.ER.ENTROPY_WEIGHT", str(entropy_weight)]
        if entropy_weight
        else []
    )
    model, optimizer, scheduler = project(
        "swav",
        "MODEL.SWAV.QUEUE_LENGTH",
        str(queue_length),
        "MODEL.SWAV.QUEUE_START_EPOCH",
        str(float(QUEUE_START_STEP)),
        "MODEL.TEMPERATURE",
        str(T),
        "MODEL.SWAV.NUM_PROTOTYPES",
        str(K),
        "MODEL.SWAV.EPSILON",
        str(EPS),
        "MODEL.SWAV.SINKHORN_ITERATIONS",
        str(SINKHORN_ITERS),
        "MODEL.SWAV.FREEZE_PROTOTYPES_EPOCHS",
        str(float(FREEZE_STEPS)),
        "DATA.MULTI_CROP.NUM_SMALL",
        str(NUM_SMALL),
        "SOLVER.OPTIMIZER",
        "larc",
        *er_opts,
    )
    model.start_run(0, iters_per_epoch=1, total_iters=10**9)
    reference = ReferenceSwAV(queue_length, entropy_weight)
    start_from_the_release(model.query_encoder, reference.net, "net")
    start_from_the_release(model.prototypes, reference.C, "prototypes")
    start = reference.C.weight.detach().clone()
    for step, crops in enumerate(multi_crop_batches(3)):
        loss = trainer_step(model, optimizer, scheduler, *crops)
        assert abs(loss - reference.step(crops)) <= 1e-6, f"step {step}: loss"
        assert_same(model.query_encoder, reference.net, "encoder", step + 1)
        assert_same(model.prototypes, reference.C, "prototypes", step + 1)
        moved = not torch.allclose(reference.C.weight, F.normalize(start, dim=1))
        assert moved == (step + 1 > FREEZE_STEPS), f"step {step}: the prototypes' freeze"
    assert int(model.iteration) == 3
    if queue_length:  # holds the last batch's embeddings of each large crop
        stored = torch.stack([r[-1] for r in reference.stored])
        assert (model.feature_queue - stored).abs().max() <= 1e-6


def test_sinkhorn_codes_are_balanced_assignments():
    """Ours on its own: each code a distribution; the prototypes' total use over the batch driven
    to B / K each (exactly with many iterations, closer than the raw softmax with 3); and equal
    to the pseudo-code's on random scores."""
    from pretrain.models.swav import sinkhorn

    scores = F.normalize(torch.randn(64, 32, dtype=torch.float64), dim=1)
    codes = sinkhorn(scores, EPS, SINKHORN_ITERS)
    assert torch.allclose(codes.sum(dim=1), torch.ones(64, dtype=torch.float64))
    even = torch.full((32,), 64 / 32, dtype=torch.float64)
    raw = F.softmax(scores / EPS, dim=1).sum(dim=0)
    assert (codes.sum(dim=0) - even).abs().max() < (raw - even).abs().max() / 2
    assert torch.allclose(sinkhorn(scores, EPS, 500).sum(dim=0), even, atol=1e-6)
    assert torch.allclose(codes, ReferenceSwAV.sinkhorn(scores), atol=1e-12)
