"""Our CMC stepped side by side with a minimal independent implementation of the paper's
two-view contrastive objective with momentum encoders and queues (Tian, Krishnan, Isola 2019,
"Contrastive Multiview Coding", Sec. 3 and its MoCo-style variant), in float64, for three SGD
steps on the same batches; two views, and three with the core-view and full-graph objectives
(Sec. 3.3).

The reference below is written from the paper, not from pretrain/: view 1 has encoder f1 (its
first conv reads view 1's k1 channels), view 2 has f2 (k2 channels); each has a momentum copy
(g1, g2) and a queue of that copy's embeddings. Per batch: z1 = f1(v1), z2 = f2(v2); the keys
g1(v1), g2(v2) under shuffle-BN, detached; L(V1, V2) anchors z1 against g2(v2) as positive and
queue 2 as negatives, L(V2, V1) symmetrically; loss = L(V1, V2) + L(V2, V1). Then an SGD step on
f1 and f2, g <- m g + (1 - m) f for each view, and each view's keys written over the oldest entries
of its own queue. Shuffle-BN in one process as in tests/pretrain/test_moco_reference.py (whose
group-BN trunk, written from MoCo's paper, is reused here): BN over G groups, key batch permuted
before the key encoder and put back after; view 1's permutation is drawn before view 2's.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pretrain.models.cmc import build_cmc

# The settings both reference tests share, and the project's model built from them.
from tests.pretrain.reference_parts import assert_same_init_law, start_from_the_release
from tests.pretrain.test_moco_reference import (
    BATCH,
    FEAT_DIM,
    GROUPS,
    LR,
    M,
    QUEUE,
    SGD_MOMENTUM,
    WEIGHT_DECAY,
    T,
    project_model,
    reference_head,
    reference_trunk,
)

STEPS = 3
TOL = 1e-6


# ----------------------------------------------------------------- the reference, from the paper


def view_encoder(in_channels: int, head: str) -> nn.ModuleDict:
    trunk = reference_trunk(GROUPS)
    trunk.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    # The release's ResNet (models/resnet.py) draws every conv from N(0, 2 / (k * k * out)),
    # the stem of 1 or 2 channels included.
    nn.init.normal_(trunk.conv1.weight, 0.0, math.sqrt(2.0 / (7 * 7 * 64)))
    return nn.ModuleDict(dict(backbone=trunk, head=reference_head(head, 512))).double()


class ReferenceCMC:
    def __init__(self, split: tuple[int, ...], head: str, graph: str = "core"):
        self.f = [view_encoder(k, head) for k in split]  # f1, f2, ...: trained by SGD
        self.g = [view_encoder(k, head) for k in split]  # g1, g2, ...: momentum copies
        for f, g in zip(self.f, self.g):
            g.load_state_dict(f.state_dict())  # each g starts as its f
        # Unit-norm random keys, as MoCo's release draws its queue (the recipe's named deviation
        # puts MoCo's queue where the paper's ImageNet CMC has a memory bank).
        self.queues = [
            F.normalize(torch.randn(QUEUE, FEAT_DIM, dtype=torch.float64), dim=1) for _ in split
        ]
        self.ptrs = [0] * len(split)
        # CMC Sec. 3.3: the core view L_C = sum_{j=2..M} L(V1, Vj); the full graph
        # L_F = sum_{1 <= i < j <= M} L(Vi, Vj); L(Vi, Vj) = L_contrast(Vi->Vj)
        # + L_contrast(Vj->Vi).
        views = range(len(split))
        self.edges = (
            [(0, j) for j in views if j > 0]
            if graph == "core"
            else [(i, j) for i in views for j in views if i < j]
        )
        # SGD's momentum buffers from zero: mu * 0 + d is d, PyTorch's first buffer, exactly
        self.velocity = [torch.zeros_like(p) for f in self.f for p in f.parameters()]

    @staticmethod
    def embed(f: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(f["head"](f["backbone"](x)), dim=1)

    @staticmethod
    def contrast(anchor: torch.Tensor, positive: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        """-log of the positive's softmax share among positive and queued negatives, mean."""
        scores = (
            torch.cat([(anchor * positive).sum(dim=1, keepdim=True), anchor @ queue.t()], dim=1) / T
        )
        return (torch.logsumexp(scores, dim=1) - scores[:, 0]).mean()

    def step(self, *views: torch.Tensor) -> float:
        z = [self.embed(f, v) for f, v in zip(self.f, views)]
        keys = []
        with torch.no_grad():
            for g, v in zip(self.g, views):
                shuffle = torch.randperm(len(v))
                keys.append(self.embed(g, v[shuffle])[torch.argsort(shuffle)])
        loss = sum(
            self.contrast(z[i], keys[j], self.queues[j])
            + self.contrast(z[j], keys[i], self.queues[i])
            for i, j in self.edges
        )
        params = [p for f in self.f for p in f.parameters()]
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, grad, v in zip(params, grads, self.velocity):  # SGD, momentum, weight decay
                v.mul_(SGD_MOMENTUM).add_(grad + WEIGHT_DECAY * p)
                p.sub_(LR * v)
            for f, g in zip(self.f, self.g):
                for p_g, p_f in zip(g.parameters(), f.parameters()):
                    p_g.copy_(M * p_g + (1 - M) * p_f)
            for view, k in enumerate(keys):
                self.queues[view][self.ptrs[view] : self.ptrs[view] + len(k)] = k
                self.ptrs[view] = (self.ptrs[view] + len(k)) % QUEUE
        return loss.item()


# ------------------------------------------------------------------------------ the comparison


def project_cmc(split: tuple[int, ...], head: str, graph: str = "core"):
    return project_model(
        build_cmc,
        "MODEL.CMC.ENABLED",
        "True",
        "DATA.COLOR_SPACE",
        "lab",
        "DATA.CHANNEL_SPLIT",
        str(split),
        "MODEL.HEAD",
        head,
        "MODEL.CMC.GRAPH",
        graph,
    )


def branches(model):
    return [getattr(model, f"view{i + 1}") for i in range(model.num_views)]


def start_from_the_releases_state(model, reference: ReferenceCMC) -> None:
    """Each of our view branches starts by the reference's laws (g a copy of f, unit-norm
    random keys in the queue), then takes the reference's draws."""
    for view, branch in enumerate(branches(model)):
        label = f"view {view + 1}"
        start_from_the_release(branch.query_encoder, reference.f[view], label, branch.key_encoder)
        queue = {"queue": reference.queues[view]}
        assert_same_init_law({"queue": branch.queue}, queue, f"{label} queue")
        branch.queue.copy_(queue["queue"])
        assert int(branch.queue_ptr) == reference.ptrs[view] == 0


def assert_same_state(model, reference: ReferenceCMC, step: int) -> None:
    for view, branch in enumerate(branches(model)):
        for side, ours, theirs in (
            ("query", branch.query_encoder, reference.f[view]),
            ("key", branch.key_encoder, reference.g[view]),
        ):
            ours, theirs = ours.state_dict(), theirs.state_dict()  # parameters and BN buffers
            assert ours.keys() == theirs.keys()
            for name in ours:
                diff = (ours[name].double() - theirs[name].double()).abs().max().item()
                assert diff <= TOL, f"step {step}: view {view + 1} {side} {name}: {diff:.2e}"
        diff = (branch.queue - reference.queues[view]).abs().max().item()
        assert diff <= TOL, f"step {step}: queue {view + 1} differs by {diff:.2e}"
        assert int(branch.queue_ptr) == reference.ptrs[view], f"step {step}: pointer {view + 1}"


@pytest.mark.parametrize(
    "split, head, graph, directions",
    [
        ((1, 2), "mlp", "core", 2),  # L | ab, MoCo v2's head
        ((2, 1), "linear", "full", 2),  # the other way round, CMC's / MoCo v1's linear head
        ((1, 1, 1), "mlp", "core", 4),  # L | a | b, L the core view: L-a, L-b, both ways
        ((1, 1, 1), "linear", "full", 6),  # every pair: L-a, L-b, a-b, both ways
    ],
)
def test_cmc_steps_like_the_paper(split, head, graph, directions):
    model, optimizer, scheduler = project_cmc(split, head, graph)
    for branch, k in zip(branches(model), split):
        assert branch.query_encoder.backbone.conv1.in_channels == k
        assert branch.key_encoder.backbone.conv1.in_channels == k
    reference = ReferenceCMC(split, head, graph)
    start_from_the_releases_state(model, reference)
    assert_same_state(model, reference, step=0)

    g = torch.Generator().manual_seed(1)
    for step in range(STEPS):
        image = torch.randn(BATCH, 3, 16, 16, generator=g, dtype=torch.float64)
        views = torch.split(image, list(split), dim=1)
        seed = 1000 + step  # as the trainer does: a fresh seed before each step

        torch.manual_seed(seed)  # ours, as pretrain/pretraining.py steps it
        loss, logits, terms, _ = model(*views)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        model.after_optimizer_step()

        torch.manual_seed(seed)  # the same permutations for the reference's shuffle-BN
        reference_loss = reference.step(*views)

        assert logits.shape == (directions * BATCH, 1 + QUEUE) and len(terms) == directions
        assert abs(loss.item() - sum(terms.values()).item()) <= TOL  # its directions
        assert abs(loss.item() - reference_loss) <= TOL, f"step {step}: loss"
        assert_same_state(model, reference, step + 1)
