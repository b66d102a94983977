"""Our PIRL stepped side by side with a minimal independent implementation of the paper's
equations (Misra & van der Maaten 2020, "Self-Supervised Learning of Pretext-Invariant
Representations", Sec. 3), in float64, for three SGD steps on the same images, JigSaw patches,
bank rows, negative draws and patch orders, with either loss.

The reference below is written from the paper, not from pretrain/: f(v_I) = normalise(W f(I))
(a linear projection of the ResNet features of the image); g(v_I^t): each of the 9 patches'
features linearly projected, the 9 embeddings concatenated in a random order and linearly
projected, normalised (Sec. 3.2); the loss of Eq. 5,
    L = lambda L_NCE(m_I, g(v_I^t)) + (1 - lambda) L_NCE(m_I, f(v_I)),  lambda = 0.5,
each L_NCE over the image's bank entry m_I and N negatives drawn uniformly from the other
images' entries (Sec. 3.1, Eq. 4), with h normalised by a Z estimated once from the first
batch (the release's norm_constant -1: on its first term, the JigSaw one), or InfoNCE over the
same entries. After the SGD step the bank entries move to f(v_I): m_I <- normalise(0.5 m_I +
0.5 f(v_I)) (Sec. 3.2)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.pretrain.reference_parts import (BANK_T, BATCH, FEAT_DIM, LR, N_IMAGES, NEGATIVES,
                                            ReferenceOptimizer, assert_same, assert_same_bank,
                                            bank_batches, estimated_z, info_nce_terms,
                                            load_into, nce_terms, network, project,
                                            step_generator, trainer_step, update_bank)

LAMBDA, PATCHES = 0.5, 9


class ReferencePIRL:
    def __init__(self, bank: torch.Tensor, loss: str):
        self.f = network(nn.Linear(512, FEAT_DIM))
        self.g = nn.ModuleDict(dict(patch_head=nn.Linear(512, FEAT_DIM),
                                    fc=nn.Linear(PATCHES * FEAT_DIM, FEAT_DIM))).double()
        self.bank = bank.clone()
        self.loss, self.z = loss, None
        self.optimizer = ReferenceOptimizer(lars=False)
        self.k = 0

    def l_nce(self, embedding: torch.Tensor, own: torch.Tensor, negatives: torch.Tensor):
        if self.loss == "infonce":
            return info_nce_terms(embedding, self.bank, own, negatives).mean()
        if self.z is None:
            self.z = estimated_z(embedding, self.bank, negatives)
        return nce_terms(embedding, self.bank, own, negatives, self.z).mean()

    def step(self, image: torch.Tensor, patches: torch.Tensor, own: torch.Tensor) -> float:
        backbone = self.f["backbone"]
        f_v = F.normalize(self.f["head"](backbone(image)), dim=1)
        patch_embeddings = self.g["patch_head"](backbone(patches.flatten(0, 1)))
        patch_embeddings = patch_embeddings.view(BATCH, PATCHES, FEAT_DIM)
        # N negatives from the dataset excluding I: uniform over the other n - 1 images, drawn
        # as an index into them; then the random order of the patches.
        generator = step_generator(self.k)
        others = torch.randint(N_IMAGES - 1, (BATCH, NEGATIVES), generator=generator)
        negatives = others + (others >= own.unsqueeze(1)).long()
        order = torch.rand(BATCH, PATCHES, generator=generator).argsort(dim=1)
        shuffled = torch.stack([patch_embeddings[i, order[i]] for i in range(BATCH)])
        g_v = F.normalize(self.g["fc"](shuffled.flatten(1)), dim=1)
        loss = (LAMBDA * self.l_nce(g_v, own, negatives)
                + (1 - LAMBDA) * self.l_nce(f_v, own, negatives))
        params = list(self.f.parameters()) + list(self.g.parameters())
        self.optimizer.step(params, torch.autograd.grad(loss, params), [LR] * len(params))
        update_bank(self.bank, own, f_v.detach())
        self.k += 1
        return loss.item()


# InfoNCE is the code path the InsDis reference test proves; here it runs in the slow tier.
@pytest.mark.parametrize("loss", ["nce", pytest.param("infonce", marks=pytest.mark.slow)])
def test_pirl_steps_like_the_papers_equations(loss):
    model, optimizer, scheduler = project(
        "pirl", "MODEL.HEAD", "linear", "MODEL.TEMPERATURE", str(BANK_T),
        "MODEL.JIGSAW.ENABLED", "True", "MODEL.JIGSAW.LOSS_WEIGHT", str(LAMBDA),
        "MODEL.MEMORY_BANK.NEGATIVES", str(NEGATIVES), "MODEL.MEMORY_BANK.LOSS", loss)
    model.memory_bank.allocate(N_IMAGES)
    reference = ReferencePIRL(model.memory_bank.vectors, loss)
    load_into(reference.f, model.query_encoder)
    load_into(reference.g, model.jigsaw_head)
    for step, (image, patches, own) in enumerate(bank_batches(3, patches=PATCHES)):
        ours = trainer_step(model, optimizer, scheduler, image, patches, own)
        assert abs(ours - reference.step(image, patches, own)) <= 1e-6, f"step {step}: loss"
        assert_same(model.query_encoder, reference.f, "encoder", step + 1)
        assert_same(model.jigsaw_head, reference.g, "jigsaw head", step + 1)
        assert_same_bank(model.memory_bank.vectors, reference.bank, step + 1)
