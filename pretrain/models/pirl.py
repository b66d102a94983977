"""PIRL (Misra & van der Maaten 2020, "Self-Supervised Learning of Pretext-Invariant
Representations", Sec. 3): an image I and its JigSaw transform I^t go through one backbone; f
(a linear projection of the image's features to 128-d) and g (the JigSaw head: each patch's
features projected, the patches concatenated in a random order and projected to 128-d,
moco.JigsawHead) are L2-normalised; both are contrasted with the image's memory-bank entry m_I
against N negatives drawn from the bank (memory_bank.py):
    L = lambda * L_NCE(m_I, g(v_I^t)) + (1 - lambda) * L_NCE(m_I, f(v_I))     (Eq. 5)
with lambda = MODEL.JIGSAW.LOSS_WEIGHT (0.5) and T = 0.07; the bank is then updated with f(v_I)
(momentum 0.5). As the authors' release computes it (VISSL's nce_loss_with_memory, which the
reference test steps): each term draws its own K negatives uniformly over the whole bank (the
image's own entry may be among them); the NCE normaliser Z is estimated once, on the first
step's JigSaw term, from all 1 + K columns, and float32's eps sits in NCE's denominators. (The
paper's Eq. 3 writes h without Z, which at T = 0.07 leaves h near 1 for every pair, and words
the negatives "excluding image I".)

Each step draws the JigSaw term's negatives, the image term's, then the patch order of the
global batch from the bank's step generator, so one process and several take the same step.
The encoder is `query_encoder` (moco.Encoder), as in every model of the project."""

from __future__ import annotations

import torch

from ..common import distributed as du
from .backbone import backbone_of_cfg
from .heads import head_of_cfg
from .memory_bank import MemoryBank, MemoryBankMethod, this_process_rows
from ..entropy_reconstruction import SPHERE, ERPair
from .method import VIEWS_INDEXED_JIGSAW, StepOutput, register_method
from .moco import Encoder, JigsawHead


NCE_EPS = float(torch.finfo(torch.float32).eps)  # VISSL's NCECriterion eps


@register_method("pirl")
class PIRL(MemoryBankMethod):
    views = VIEWS_INDEXED_JIGSAW
    loss_terms = ("jigsaw", "image")

    def __init__(
        self,
        encoder: Encoder,
        jigsaw_head: JigsawHead,
        memory_bank: MemoryBank,
        jigsaw_weight: float,
    ):
        super().__init__(encoder, memory_bank)
        self.jigsaw_head = jigsaw_head
        self.jigsaw_weight = jigsaw_weight

    @classmethod
    def from_cfg(cls, cfg) -> "PIRL":
        """The bank as VISSL's nce_loss_with_memory runs it (module docstring)."""
        m = cfg.MODEL
        backbone, dim = backbone_of_cfg(cfg)
        encoder = Encoder(backbone, head_of_cfg(cfg, dim))
        jigsaw = JigsawHead(head_of_cfg(cfg, dim), m.JIGSAW.GRID**2, m.FEAT_DIM)
        return cls(
            encoder,
            jigsaw,
            MemoryBank.from_cfg(cfg, z_with_own=True, nce_eps=NCE_EPS),
            m.JIGSAW.LOSS_WEIGHT,
        )

    def forward(
        self, images: torch.Tensor, patches: torch.Tensor, indices: torch.Tensor
    ) -> StepOutput:
        """images: (N, C, H, W); patches: (N, P, C, h, w) the JigSaw patches of the same images;
        indices: (N,) their rows in the bank. The loss, the image term's logits, and the terms
        "jigsaw" and "image"."""
        image_embeddings = self.query_encoder(images)
        patch_features = self.query_encoder.backbone(patches.flatten(0, 1))
        all_indices = du.all_gather_cat(indices)
        negatives, generator = self.memory_bank.draw(all_indices)
        image_negatives = self.memory_bank.draw_more(all_indices, generator)
        order = torch.rand(
            len(all_indices), patches.shape[1], generator=generator, device=generator.device
        ).argsort(dim=1)
        mine = len(indices)
        jigsaw = self.jigsaw_head(patch_features, len(patches), this_process_rows(order, mine))
        bank = self.memory_bank
        jigsaw_logits = bank.logits(jigsaw, indices, this_process_rows(negatives, mine))
        jigsaw_loss = bank.loss(jigsaw_logits)  # first: the step that sets Z sets it here
        image_logits = bank.logits(
            image_embeddings, indices, this_process_rows(image_negatives, mine)
        )
        image_loss = bank.loss(image_logits)
        loss = self.jigsaw_weight * jigsaw_loss + (1 - self.jigsaw_weight) * image_loss
        bank.update(all_indices, du.all_gather_cat(image_embeddings.detach()))
        return StepOutput(
            loss,
            image_logits,
            {"jigsaw": jigsaw_loss.detach(), "image": image_loss.detach()},
            ERPair(SPHERE, jigsaw.detach(), image_embeddings.detach()),
        )
