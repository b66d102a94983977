"""InsDis (Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination", Sec. 3): one view per image, encoded by a backbone and a linear projection to
an L2-normalised 128-d embedding f; its positive is the image's own entry in the memory bank
(memory_bank.py), its negatives K entries drawn uniformly from the bank; NCE (Eq. 5-7) or
InfoNCE over them at T = 0.07; after the loss the batch's entries move towards f with momentum
0.5 (Sec. 3.2). No momentum encoder.

Not implemented: the proximal regularisation of Sec. 3.3 (the authors' released ImageNet code,
lemniscate.pytorch, trains without it; the bank's momentum update plays that role).

The encoder is `query_encoder` (moco.Encoder), as in every model of the project, so the kNN
monitor, the readouts and tools/convert.py find its backbone."""

from __future__ import annotations

import torch

from ..common import distributed as du
from .memory_bank import MemoryBank, MemoryBankMethod, this_process_rows
from ..entropy_reconstruction import SPHERE, ERPair
from .method import VIEWS_INDEXED, StepOutput, register_method
from .moco import Encoder


@register_method("insdis")
class InsDis(MemoryBankMethod):
    views = VIEWS_INDEXED
    loss_terms = ("instance",)

    @classmethod
    def from_cfg(cls, cfg) -> "InsDis":
        # Z over all K + 1 columns and eps 1e-7 in NCE's denominators, as the release
        # (lemniscate.pytorch) computes them
        return cls(Encoder.from_cfg(cfg), MemoryBank.from_cfg(cfg, z_with_own=True, nce_eps=1e-7))

    def forward(self, images: torch.Tensor, indices: torch.Tensor) -> StepOutput:
        """images: (N, C, H, W) one view per image; indices: (N,) their rows in the bank.
        The loss, its logits (own entry at column 0, then the K negatives) and its one term."""
        embeddings = self.query_encoder(images)
        all_indices = du.all_gather_cat(indices)
        negatives, _ = self.memory_bank.draw(all_indices)
        logits = self.memory_bank.logits(
            embeddings, indices, this_process_rows(negatives, len(indices))
        )
        loss = self.memory_bank.loss(logits)
        own_entries = self.memory_bank.vectors[indices].clone()  # what the embedding must match
        self.memory_bank.update(all_indices, du.all_gather_cat(embeddings.detach()))
        return StepOutput(
            loss,
            logits,
            {"instance": loss.detach()},
            ERPair(SPHERE, embeddings.detach(), own_entries),
        )
