"""Our PIRL stepped side by side with a minimal independent implementation of the authors'
release (VISSL: configs/config/pretrain/pirl/pirl_jigsaw_4node_resnet50.yaml, the loss
nce_loss_with_memory in vissl/losses/nce_loss.py), in float64, for three SGD steps on the same
images, JigSaw patches, bank rows, negative draws and patch orders, with either loss.

The reference below is written from the release's algorithm, not from pretrain/: f(v_I) =
normalise(W f(I)) (a linear head on the ResNet features of the image); g(v_I^t): each of the 9
patches' features through a linear head, the 9 embeddings concatenated (in the patches' shuffled
order) and linearly projected, normalised; the loss
    L = 0.5 L_NCE(m_I, g(v_I^t)) + 0.5 L_NCE(m_I, f(v_I))
(the JigSaw term first), each term drawing its own K indices uniformly over all n bank entries
(the image's own entry may come up) and putting the image's own index in column 0. "nce": the
scores s = m . v / T, P = exp(s) / Z with Z = n x the mean of exp(s) over all B x (1 + K)
entries of the first term ever computed (then fixed), and
    L_NCE = -mean_b [log P_b0 / (P_b0 + K/n + eps) + sum_j log (K/n) / (P_bj + K/n + eps)],
eps float32's; "infonce": cross-entropy over the 1 + K scores. The bank rows of the batch then
move to m_I <- normalise(0.5 m_I + 0.5 f(v_I)), as scored before the update. SGD with momentum
0.9 and weight decay 1e-4 except on BN and bias parameters (regularize_bn / _bias False); the
lr on the release's cosine, set once per epoch, from LR down to end_value 0.001 LR at the end.

Deliberate deviations, named in configs/pretrain/pirl_R50_800ep.yaml: the draw protocol (the
project's step generator instead of each rank's global one) and the bank's initial vectors
(Gaussian, normalised; the release draws them uniform in [-1/sqrt(D/3), 1/sqrt(D/3)] and
normalises): both sides here start from our bank and use the same draws."""

from __future__ import annotations

import math

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
    release_bank,
    start_from_the_release,
    start_from_the_release_bank,
    network,
    project,
    step_generator,
    trainer_step,
    update_bank,
)

LAMBDA, PATCHES, TOTAL = 0.5, 9, 4  # a 4-epoch cosine (one step an epoch): its floor shows
EPS = torch.finfo(torch.float32).eps
END_FRACTION = 0.001


def release_lr(epoch: int) -> float:
    """VISSL's CosineParamScheduler per epoch: end + 0.5 (start - end) (1 + cos(pi e / E))."""
    start, end = LR, END_FRACTION * LR
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * epoch / TOTAL))


class ReferencePIRL:
    def __init__(self, bank: torch.Tensor, loss: str):
        self.f = network(nn.Linear(512, FEAT_DIM))
        self.g = nn.ModuleDict(
            dict(patch_head=nn.Linear(512, FEAT_DIM), fc=nn.Linear(PATCHES * FEAT_DIM, FEAT_DIM))
        ).double()
        self.bank = bank.clone()
        self.loss, self.z = loss, None
        self.optimizer = ReferenceOptimizer(lars=False, decay_1d=False)
        self.k = 0

    def l_nce(self, embedding: torch.Tensor, own: torch.Tensor, negatives: torch.Tensor):
        idx = torch.cat([own.unsqueeze(1), negatives], dim=1)  # column 0: the image's own row
        scores = torch.einsum("bkd,bd->bk", self.bank[idx], embedding) / BANK_T
        if self.loss == "infonce":
            return F.cross_entropy(scores, torch.zeros(BATCH, dtype=torch.long))
        if self.z is None:
            self.z = (scores.detach().exp().mean() * N_IMAGES).item()
        p = scores.exp() / self.z
        noise = NEGATIVES / N_IMAGES
        positive = torch.log(p[:, 0] / (p[:, 0] + noise + EPS))
        negative = torch.log(noise / (p[:, 1:] + noise + EPS)).sum(dim=1)
        return -(positive + negative).sum() / BATCH

    def step(self, image: torch.Tensor, patches: torch.Tensor, own: torch.Tensor) -> float:
        backbone = self.f["backbone"]
        f_v = F.normalize(self.f["head"](backbone(image)), dim=1)
        patch_embeddings = self.g["patch_head"](backbone(patches.flatten(0, 1)))
        patch_embeddings = patch_embeddings.view(BATCH, PATCHES, FEAT_DIM)
        # Each term's K indices uniform over all n entries; then the random order of the patches.
        generator = step_generator(self.k)
        jigsaw_negatives = torch.randint(N_IMAGES, (BATCH, NEGATIVES), generator=generator)
        image_negatives = torch.randint(N_IMAGES, (BATCH, NEGATIVES), generator=generator)
        order = torch.rand(BATCH, PATCHES, generator=generator).argsort(dim=1)
        shuffled = torch.stack([patch_embeddings[i, order[i]] for i in range(BATCH)])
        g_v = F.normalize(self.g["fc"](shuffled.flatten(1)), dim=1)
        loss = LAMBDA * self.l_nce(g_v, own, jigsaw_negatives) + (1 - LAMBDA) * self.l_nce(
            f_v, own, image_negatives
        )
        params = list(self.f.parameters()) + list(self.g.parameters())
        rate = release_lr(self.k)
        self.optimizer.step(params, torch.autograd.grad(loss, params), [rate] * len(params))
        update_bank(self.bank, own, f_v.detach())
        self.k += 1
        return loss.item()


# InfoNCE is the code path the InsDis reference test proves; here it runs in the slow tier.
@pytest.mark.parametrize("loss", ["nce", pytest.param("infonce", marks=pytest.mark.slow)])
def test_pirl_steps_like_its_release(loss):
    model, optimizer, scheduler = project(
        "pirl",
        "MODEL.HEAD",
        "linear",
        "MODEL.TEMPERATURE",
        str(BANK_T),
        "MODEL.JIGSAW.ENABLED",
        "True",
        "MODEL.JIGSAW.LOSS_WEIGHT",
        str(LAMBDA),
        "MODEL.MEMORY_BANK.NEGATIVES",
        str(NEGATIVES),
        "MODEL.MEMORY_BANK.LOSS",
        loss,
        "SOLVER.DECAY_BIAS_AND_NORM",
        "False",
        "SOLVER.LR_GRANULARITY",
        "epoch",
        "SOLVER.COSINE_FLOOR",
        str(END_FRACTION),
        total_iters=TOTAL,
    )
    model.memory_bank.allocate(N_IMAGES)
    bank = release_bank(normalise=True)
    start_from_the_release_bank(model.memory_bank, bank)
    reference = ReferencePIRL(bank, loss)
    start_from_the_release(model.query_encoder, reference.f, "f")
    start_from_the_release(model.jigsaw_head, reference.g, "g")
    for step, (image, patches, own) in enumerate(bank_batches(3, patches=PATCHES)):
        ours = trainer_step(model, optimizer, scheduler, image, patches, own)
        assert abs(ours - reference.step(image, patches, own)) <= 1e-6, f"step {step}: loss"
        assert_same(model.query_encoder, reference.f, "encoder", step + 1)
        assert_same(model.jigsaw_head, reference.g, "jigsaw head", step + 1)
        assert_same_bank(model.memory_bank.vectors, reference.bank, step + 1)
