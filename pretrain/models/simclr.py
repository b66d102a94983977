"""SimCLR (Chen, Kornblith, Norouzi, Hinton 2020, "A Simple Framework for Contrastive Learning of
Visual Representations", Sec. 2.1 and Algorithm 1): one encoder (backbone + projection MLP with
BN), both views of the batch through it, NT-Xent over the global batch: each of the 2B views has
the other view of its image as positive and the other 2B - 2 views as negatives; no momentum
encoder, no queue.

As in the official code, both views go through the encoder as one batch of 2N (so its BN
statistics span both views; global BN across processes with MODEL.SYNC_BN). Across processes the
embeddings are gathered with their gradient, so every process's loss, averaged by DDP, is the
global batch's. The encoder is `query_encoder` (moco.Encoder), as in every model of the
project, so the kNN monitor, the readouts and tools/convert.py find its backbone."""

from __future__ import annotations

import torch

from ..common import distributed as du
from ..losses import nt_xent
from ..entropy_reconstruction import SPHERE, ERPair
from .method import Method, StepOutput, register_method
from .moco import Encoder


@register_method("simclr")
class SimCLR(Method):
    info_nce_terms = ("nt_xent",)

    def __init__(self, encoder: Encoder, temperature: float):
        super().__init__()
        self.query_encoder = encoder
        self.temperature = temperature

    @classmethod
    def from_cfg(cls, cfg) -> "SimCLR":
        return cls(Encoder.from_cfg(cfg), cfg.MODEL.TEMPERATURE)

    def num_negatives(self, global_batch_size: int) -> int:
        """Per anchor: the 2B - 2 other views of the global batch."""
        return 2 * global_batch_size - 2

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        """The loss, the logits of this process's 2N anchors (positive at column 0), and the
        term "nt_xent", NT-Xent's mean over the 2N anchors (an InfoNCE: the log's I_NCE).

        The loss is twice that mean, as the release optimises it (tag 1.0, objective.py: the
        sum of the two directions' batch means, loss_a + loss_b). Under LARS the factor is not
        a no-op: the biases and BN parameters, which LARS does not rescale, get twice the step
        of a plain mean."""
        z1, z2 = self.query_encoder(torch.cat([view1, view2])).chunk(2)
        mean, logits = nt_xent(
            z1,
            z2,
            self.temperature,
            du.all_gather_with_grad(z1),
            du.all_gather_with_grad(z2),
            offset=du.get_rank() * len(z1),
        )
        return StepOutput(
            2 * mean, logits, {"nt_xent": mean.detach()}, ERPair(SPHERE, z1.detach(), z2.detach())
        )
