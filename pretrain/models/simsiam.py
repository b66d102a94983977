"""SimSiam (Chen & He 2021, "Exploring Simple Siamese Representation Learning", Sec. 3 and
Algorithm 1): one encoder f (backbone + projection MLP) and a predictor h;
    L = D(p1, z2) / 2 + D(p2, z1) / 2,  D(p, z) = -cos(p, stopgrad(z)),
no negatives, no momentum encoder. The predictor's learning rate stays fixed (Table 1:
SOLVER.PREDICTOR_FIXED_LR, pretrain/models/optim.py).

The encoder is `query_encoder` (moco.Encoder), as in every model of the project, so the kNN
monitor, the readouts and tools/convert.py find its backbone; keys for the fresh-key probes are
the same encoder's embeddings (`encode_keys`)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..losses import mean_cosine
from .byol import batch_logits
from .heads import predictor_of_cfg
from ..entropy_reconstruction import SPHERE, ERPair
from .method import Method, StepOutput, register_method
from .moco import Encoder


@register_method("simsiam")
class SimSiam(Method):
    """No negatives: the log prints no I_NCE."""

    def __init__(self, encoder: Encoder, predictor: nn.Module, temperature: float):
        """`temperature` only scales the fresh-key probes (evaluation/fresh_keys.py)."""
        super().__init__()
        self.query_encoder = encoder
        self.predictor = predictor
        self.temperature = temperature

    @classmethod
    def from_cfg(cls, cfg) -> "SimSiam":
        m = cfg.MODEL
        encoder = Encoder.from_cfg(cfg)
        predictor = predictor_of_cfg(cfg, "simsiam")
        return cls(encoder, predictor, m.TEMPERATURE)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        """The loss, in-batch logits of the first direction (for the log's accuracy), and the
        two directions' terms -cos(p, stopgrad(z)) / 2."""
        encoder = self.query_encoder
        z1, z2 = encoder.head(encoder.backbone(view1)), encoder.head(encoder.backbone(view2))
        p1, p2 = self.predictor(z1), self.predictor(z2)
        d12, d21 = -mean_cosine(p1, z2) / 2, -mean_cosine(p2, z1) / 2  # z detached in mean_cosine
        return StepOutput(
            d12 + d21,
            batch_logits(p1, z2),
            {"1->2": d12.detach(), "2->1": d21.detach()},
            ERPair(SPHERE, F.normalize(p1.detach(), dim=1), F.normalize(z2.detach(), dim=1)),
        )
