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
from .heads import predictor_of_cfg
from ..entropy_reconstruction import SPHERE, ERObjective, ERPair, entropy, reconstruction
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
    predictor = predictor_of_cfg(cfg, cls.name)
    return cls(encoder, predictor, m.FEAT_DIM, m.MOMENTUM, m.MOMENTUM_COSINE, m.TEMPERATURE)


@register_method("byol")
class BYOL(Method):
    """No negatives: the log prints no I_NCE. Terms "1->2", "2->1": 2 - 2 cos each, in [0, 4].

    BYOL-ER (MODEL.ER.OBJECTIVE; Rodríguez-Gálvez et al. 2023, Sec. 5): the loss is, summed
    over the two directions, Rec(z'_j | q_i) - w H(z_i): the vMF reconstruction of the target's
    projection from the online prediction (both L2-normalised; BYOL's own loss up to the
    scale kappa / 2 and a constant) minus w times the vMF entropy of the online projections
    g_theta(f_theta(v_i)), L2-normalised. The paper's bound has H(Z2) of the target, which the
    stop-gradient leaves without a gradient; the online projection is its trained counterpart
    (our reading: the authors' release publishes the estimators, not the training code).
    Terms "reconstruction" and "entropy", each summed over the directions."""

    views = VIEWS_PAIR
    anneals_momentum = True
    has_er_variant = True
    legacy_keys = ("queue", "queue_ptr")  # empty buffers of when BYOL was built on MoCo

    def __init__(
        self,
        online: Encoder,
        predictor: nn.Module,
        feat_dim: int,
        momentum: float,
        momentum_cosine: bool,
        temperature: float,
    ):
        """`temperature` only scales the fresh-key probes (evaluation/fresh_keys.py)."""
        super().__init__()
        self.query_encoder = online
        self.key_encoder = frozen_copy(online)
        self.temperature = temperature
        self.predictor = predictor
        self.momentum = momentum
        self.momentum_schedule = MomentumSchedule(momentum, momentum_cosine)
        self.er: ERObjective | None = None  # the BYOL-ER loss instead of BYOL's (from_cfg)

    @classmethod
    def from_cfg(cls, cfg) -> "Method":
        model = online_and_target_from_cfg(cls, cfg)
        model.er = ERObjective.from_cfg(cfg)
        return model

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

    def project(self, images: torch.Tensor) -> torch.Tensor:
        """g_theta(f_theta(v)): the online projection, not normalised."""
        return self.query_encoder.head(self.query_encoder.backbone(images))

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        """The loss, in-batch logits of the first direction (for the log's accuracy) and the
        two directions' terms."""
        y1, y2 = self.project(view1), self.project(view2)
        p1, p2 = self.predictor(y1), self.predictor(y2)
        z1, z2 = self.encode_keys(view1), self.encode_keys(view2)  # target projections, no grad
        if self.er is not None:
            kappa = self.er.kappa
            rec = sum(
                reconstruction(F.normalize(p, dim=1), z, SPHERE, kappa)
                for p, z in ((p1, z2), (p2, z1))
            )
            h = sum(entropy(F.normalize(y, dim=1), SPHERE, kappa) for y in (y1, y2))
            return StepOutput(
                self.er.loss(rec, h),
                batch_logits(p1, z2),
                {"reconstruction": rec.detach(), "entropy": h.detach()},
                ERPair(SPHERE, F.normalize(p1.detach(), dim=1), z2),
            )
        d12, d21 = 2 - 2 * mean_cosine(p1, z2), 2 - 2 * mean_cosine(p2, z1)
        return StepOutput(
            d12 + d21,
            batch_logits(p1, z2),
            {"1->2": d12.detach(), "2->1": d21.detach()},
            ERPair(SPHERE, F.normalize(p1.detach(), dim=1), z2),
        )
