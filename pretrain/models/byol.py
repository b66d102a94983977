"""BYOL (Grill et al. 2020, "Bootstrap Your Own Latent", Sec. 3 and Algorithm 1): an online
network (backbone, projector, predictor) regresses the target network's projection of the other
view; the target (backbone, projector) is an EMA of the online one with tau annealed from
tau_base to 1 (ema.py); no negatives. The loss is symmetric, each term Eq. 2's
||q/|q| - z'/|z'| ||^2 = 2 - 2 cos(q, z'), summed over the two directions.

`query_encoder` is the online backbone + projector, `key_encoder` the target (names shared with
MoCo so that the readouts and tools/convert.py --encoder key find them), an EMA of it after each
optimizer step (ema.py); no queue and no shuffle-BN (BYOL uses global BN: MODEL.SYNC_BN)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..losses import info_nce, mean_cosine
from .ema import MomentumSchedule, ema_update, frozen_copy
from .heads import build_predictor
from .method import VIEWS_PAIR, Method, StepOutput, register_method
from .moco import Encoder


def batch_logits(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """For the log's accuracy only: each prediction's cosines with its own target (column 0) and
    the process's other targets, no gradient."""
    with torch.no_grad():
        p, z = F.normalize(predictions, dim=1), F.normalize(targets, dim=1)
        return info_nce(p, z, z.new_zeros(0, z.shape[1]), 1.0, batch_keys=z)[1]


def online_and_target_from_cfg(cls, cfg) -> Method:
    """BYOL or MoCo v3 (`cls`): the encoder, MODEL.METHOD's predictor, the EMA target."""
    m = cfg.MODEL
    encoder = Encoder.from_cfg(cfg)
    predictor = build_predictor(cls.name, m.FEAT_DIM, m.PREDICTOR_HIDDEN_DIM)
    return cls(encoder, predictor, m.FEAT_DIM, m.MOMENTUM, m.MOMENTUM_COSINE, m.TEMPERATURE)


@register_method("byol")
class BYOL(Method):
    """No negatives: the log prints no I_NCE. Terms "1->2", "2->1": 2 - 2 cos each, in [0, 4]."""
    views = VIEWS_PAIR
    anneals_momentum = True
    legacy_keys = ("queue", "queue_ptr")  # empty buffers of when BYOL was built on MoCo

    def __init__(self, online: Encoder, predictor: nn.Module, feat_dim: int, momentum: float,
                 momentum_cosine: bool, temperature: float):
        """`temperature` only scales the fresh-key probes (evaluation/fresh_keys.py)."""
        super().__init__()
        self.query_encoder = online
        self.key_encoder = frozen_copy(online)
        self.temperature = temperature
        self.predictor = predictor
        self.momentum = momentum
        self.momentum_schedule = MomentumSchedule(momentum, momentum_cosine)

    @classmethod
    def from_cfg(cls, cfg) -> "Method":
        return online_and_target_from_cfg(cls, cfg)

    def start_run(self, samples: int, iters_per_epoch: int, total_iters: int) -> None:
        self.momentum_schedule.total_steps = total_iters  # tau annealed over the whole run

    def after_optimizer_step(self) -> None:
        """xi <- tau_k xi + (1 - tau_k) theta, after the optimizer step of step k."""
        self.momentum = self.momentum_schedule.next()
        ema_update(self.key_encoder, self.query_encoder, self.momentum)

    @torch.no_grad()
    def encode_keys(self, images: torch.Tensor) -> torch.Tensor:
        """The target's projections, L2-normalised."""
        return self.key_encoder(images)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """q_theta(g_theta(f_theta(v))): the online prediction, not normalised."""
        return self.predictor(self.query_encoder.head(self.query_encoder.backbone(images)))

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        """The loss, in-batch logits of the first direction (for the log's accuracy) and the
        two directions' terms."""
        p1, p2 = self.predict(view1), self.predict(view2)
        z1, z2 = self.encode_keys(view1), self.encode_keys(view2)  # target projections, no grad
        d12, d21 = 2 - 2 * mean_cosine(p1, z2), 2 - 2 * mean_cosine(p2, z1)
        return StepOutput(d12 + d21, batch_logits(p1, z2),
                          {"1->2": d12.detach(), "2->1": d21.detach()})
