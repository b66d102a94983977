"""MoCo v3 for ResNet (Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision
Transformers", Sec. 3 and Algorithm 1): a query encoder (backbone, projector, predictor) and a
momentum key encoder (backbone, projector); each view's queries are contrasted with the other
view's keys of the whole (global) batch, the batch's other keys the negatives, no queue:
    loss = ctr(q1, k2) + ctr(q2, k1),  ctr(q, k) = 2 T * CrossEntropy(q k^T / T, own index).
The momentum m may be annealed to 1 by a half cosine as in the official ResNet recipes (ema.py).

Built on MoCo's machinery (moco.py): `query_encoder` / `key_encoder` with the EMA
`momentum_update()` after each optimizer step, and MoCo's InfoNCE with in-batch keys (the same
cross-entropy, its positive moved to column 0). No shuffle-BN: MoCo v3 uses global BN
(MODEL.SYNC_BN)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import distributed as du
from ..losses import info_nce
from .ema import MomentumSchedule
from .moco import Encoder, MoCo


class MoCoV3(MoCo):
    def __init__(self, query_encoder: Encoder, predictor: nn.Module, feat_dim: int,
                 momentum: float, momentum_cosine: bool, temperature: float):
        super().__init__(query_encoder, feat_dim, queue_size=0, momentum=momentum,
                         temperature=temperature, shuffle_bn=False, batch_negatives=True)
        self.predictor = predictor
        self.momentum_schedule = MomentumSchedule(momentum, momentum_cosine)
        # The loss is 2 T * (two cross-entropies); the trainer logs it divided by this, i.e. one
        # direction's InfoNCE, so that I_NCE = log(K + 1) - loss holds as for MoCo.
        self.loss_terms = 4 * temperature

    @torch.no_grad()
    def momentum_update(self) -> None:
        self.momentum = self.momentum_schedule.next()
        super().momentum_update()

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """The predictor's output on the projection, L2-normalised."""
        z = self.query_encoder.head(self.query_encoder.backbone(images))
        return F.normalize(self.predictor(z), dim=1)

    def _contrast(self, queries: torch.Tensor, keys: torch.Tensor):
        all_keys = du.all_gather_cat(keys)
        empty = keys.new_zeros(0, keys.shape[1])
        return info_nce(queries, keys, empty, self.temperature, batch_keys=all_keys,
                        offset=du.get_rank() * len(keys))

    def forward(self, view1: torch.Tensor, view2: torch.Tensor):
        """Returns (loss, logits of both directions stacked along the batch)."""
        q1, q2 = self.query(view1), self.query(view2)
        k1, k2 = self.encode_keys(view1), self.encode_keys(view2)  # normalised, no grad
        loss12, logits12 = self._contrast(q1, k2)
        loss21, logits21 = self._contrast(q2, k1)
        return 2 * self.temperature * (loss12 + loss21), torch.cat([logits12, logits21])
