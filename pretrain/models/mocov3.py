"""MoCo v3 for ResNet (Chen, Xie, He 2021, "An Empirical Study of Training Self-Supervised Vision
Transformers", Sec. 3 and Algorithm 1): a query encoder (backbone, projector, predictor) and a
momentum key encoder (backbone, projector); each view's queries are contrasted with the other
view's keys of the whole (global) batch, the batch's other keys the negatives, no queue:
    loss = ctr(q1, k2) + ctr(q2, k1),  ctr(q, k) = 2 T * CrossEntropy(q k^T / T, own index).
The momentum m may be annealed to 1 by a half cosine as in the official ResNet recipes (ema.py).

`query_encoder` / `key_encoder` (MoCo's names, which the readouts and tools/convert.py read), the
key encoder an EMA of the query one after each optimizer step (ema.py), and MoCo's InfoNCE with
in-batch keys (the same cross-entropy, its positive moved to column 0). No shuffle-BN: MoCo v3
uses global BN (MODEL.SYNC_BN)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import distributed as du
from ..losses import info_nce
from .byol import online_and_target_from_cfg
from .ema import MomentumSchedule, ema_update, frozen_copy
from ..entropy_reconstruction import SPHERE, ERPair
from .method import VIEWS_PAIR, Method, StepOutput, register_method
from .moco import Encoder


@register_method("mocov3")
class MoCoV3(Method):
    """Terms "1->2", "2->1": each direction's InfoNCE (before the 2 T factor); the log's I_NCE
    is from their mean, against the global batch's other keys."""

    views = VIEWS_PAIR
    info_nce_terms = ("1->2", "2->1")
    anneals_momentum = True
    legacy_keys = ("queue", "queue_ptr")  # empty buffers of when MoCo v3 was built on MoCo

    def __init__(
        self,
        query_encoder: Encoder,
        predictor: nn.Module,
        feat_dim: int,
        momentum: float,
        momentum_cosine: bool,
        temperature: float,
    ):
        super().__init__()
        self.query_encoder = query_encoder
        self.key_encoder = frozen_copy(query_encoder)
        self.temperature = temperature
        self.momentum = momentum
        self.predictor = predictor
        # The release's update at the start of iteration k + 1 with m_{k+1} (ema.py, lead 1).
        self.momentum_schedule = MomentumSchedule(momentum, momentum_cosine, lead=1)

    @classmethod
    def from_cfg(cls, cfg) -> "Method":
        return online_and_target_from_cfg(cls, cfg)

    def start_run(self, samples: int, iters_per_epoch: int, total_iters: int) -> None:
        self.momentum_schedule.total_steps = total_iters  # m annealed over the whole run

    def num_negatives(self, global_batch_size: int) -> int:
        """The global batch's other keys."""
        return global_batch_size - 1

    def after_optimizer_step(self) -> None:
        self.momentum = self.momentum_schedule.next()
        ema_update(self.key_encoder, self.query_encoder, self.momentum)

    @torch.no_grad()
    def encode_keys(self, images: torch.Tensor) -> torch.Tensor:
        """The key encoder's projections, L2-normalised."""
        return self.key_encoder(images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """The predictor's output on the projection, L2-normalised."""
        z = self.query_encoder.head(self.query_encoder.backbone(images))
        return F.normalize(self.predictor(z), dim=1)

    def _contrast(self, queries: torch.Tensor, keys: torch.Tensor):
        all_keys = du.all_gather_cat(keys)
        empty = keys.new_zeros(0, keys.shape[1])
        return info_nce(
            queries,
            keys,
            empty,
            self.temperature,
            batch_keys=all_keys,
            offset=du.get_rank() * len(keys),
        )

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        """The loss, logits of both directions stacked along the batch, and the two
        directions' InfoNCE terms."""
        q1, q2 = self.query(view1), self.query(view2)
        k1, k2 = self.encode_keys(view1), self.encode_keys(view2)  # normalised, no grad
        loss12, logits12 = self._contrast(q1, k2)
        loss21, logits21 = self._contrast(q2, k1)
        return StepOutput(
            2 * self.temperature * (loss12 + loss21),
            torch.cat([logits12, logits21]),
            {"1->2": loss12.detach(), "2->1": loss21.detach()},
            ERPair(SPHERE, q1.detach(), k2),
        )
