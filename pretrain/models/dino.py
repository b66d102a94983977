"""DINO for ResNet (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision
Transformers", Sec. 3.1 and Algorithm 1): a student (backbone + DINO head) and a teacher of the
same architecture, an EMA of the student with momentum annealed from MODEL.MOMENTUM to 1 by a
cosine (ema.py). The teacher sees only the two global (large) crops, the student every crop;
the teacher's outputs are centred (C, an EMA of their global-batch mean with momentum m) and
sharpened (temperature tau_t, linearly warmed up over the first epochs), and each student crop
predicts each teacher crop but its own:
    L = 1/(2V - 2) sum_{i in {1,2}} sum_{v != i} mean_b [ -sum_k P_t,i^(k) log P_s,v^(k) ],
    P_t = softmax((g_t - C) / tau_t),  P_s = softmax(g_s / tau_s),
V the number of crops (Algorithm 1 for two crops; the release's average over pairs with
multi-crop). Then C <- m C + (1 - m) mean(g_t) over both global crops of the global batch.

The head (Sec. 3.1 / App.): a 3-layer MLP (hidden 2048, GELU, no BN: the release's default for
ResNet) to a bottleneck (MODEL.FEAT_DIM, 256), L2-normalised, then a weight-normalised linear
layer without bias to K = MODEL.DINO.OUT_DIM outputs whose norm g is fixed to 1
(MODEL.DINO.NORM_LAST_LAYER). As in the release, the last layer gets no update during the first
MODEL.DINO.FREEZE_LAST_LAYER_EPOCHS and each student gradient is clipped to norm
MODEL.DINO.CLIP_GRAD on its own (`adjust_gradients`, called between backward and the step).

The student is `query_encoder`, the teacher `key_encoder` (MoCo's names: tools/convert.py
--encoder key converts the teacher, the network DINO evaluates), an EMA of the student after each
optimizer step (ema.py)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import distributed as du
from ..common.errors import ConfigError
from .backbone import backbone_of_cfg
from .ema import MomentumSchedule, ema_update, frozen_copy
from ..entropy_reconstruction import DISCRETE, ERObjective, ERPair, entropy
from .method import VIEWS_MULTI_CROP, Method, StepOutput, register_method
from .moco import Encoder
from ..losses import at_least_float32
from .swav import agreement_logits, crop_features


class WeightNormLinear(nn.Module):
    """Linear without bias, weight = g * v / |v| per output row (Salimans & Kingma 2016), with
    the parameter names of torch's weight_norm (weight_g, weight_v); g starts at 1 and with
    `fixed_norm` is never trained."""

    def __init__(self, in_dim: int, out_dim: int, fixed_norm: bool):
        super().__init__()
        self.weight_v = nn.Parameter(nn.Linear(in_dim, out_dim, bias=False).weight.detach())
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not fixed_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_g * F.normalize(self.weight_v, dim=1))


class DINOHead(nn.Module):
    """MLP (Linear - GELU - Linear - GELU - Linear to the bottleneck; weights drawn from a
    truncated normal of std 0.02, biases 0, as the release), L2 normalisation, then the
    weight-normalised last layer."""

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        bottleneck_dim: int,
        out_dim: int,
        norm_last_layer: bool = True,
    ):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim, norm_last_layer)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(features), dim=1))


def teacher_temperature(epoch: int, warmup: float, final: float, warmup_epochs: int) -> float:
    """tau_t of `epoch` (0 first): linear from `warmup` to `final` over the first
    `warmup_epochs` epochs (the release's linspace: epoch e of W gets warmup + (final - warmup)
    e / (W - 1)), `final` after."""
    if epoch >= warmup_epochs:
        return final
    if warmup_epochs == 1:
        return warmup
    return warmup + (final - warmup) * epoch / (warmup_epochs - 1)


@register_method("dino")
class DINO(Method):
    """No negatives: the log prints no I_NCE. Term "cross_entropy": the student-teacher
    cross-entropy averaged over the crop pairs.

    DINO-ER (MODEL.ER.OBJECTIVE; Rodríguez-Gálvez et al. 2023, Sec. 5): DINO's cross-entropy
    is the reconstruction term (discrete support); the loss subtracts w times the discrete
    entropy of the student's batch-mean distribution P_s over the K outputs, averaged over the
    two global crops (the teacher, which the paper's H(W2) is of, gets no gradient; centring
    and sharpening stay). Terms "cross_entropy" and "entropy"."""

    views = VIEWS_MULTI_CROP
    adjusts_gradients = True
    anneals_momentum = True
    has_er_variant = True
    er: ERObjective | None = None  # set by from_cfg
    legacy_keys = ("queue", "queue_ptr")  # empty buffers of when DINO was built on MoCo

    def __init__(
        self,
        student: Encoder,
        out_dim: int,
        momentum: float,
        momentum_cosine: bool,
        student_temp: float,
        teacher_temp: float,
        warmup_teacher_temp: float,
        warmup_teacher_temp_epochs: int,
        center_momentum: float,
        freeze_last_layer_epochs: float,
        clip_grad: float,
    ):
        """`student_temp` also scales the fresh-key probes (evaluation/fresh_keys.py)."""
        super().__init__()
        self.query_encoder = student
        self.key_encoder = frozen_copy(student)
        self.temperature, self.momentum = student_temp, momentum
        self.momentum_schedule = MomentumSchedule(momentum, momentum_cosine)
        self.student_temp, self.teacher_temp = student_temp, teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.center_momentum = center_momentum
        self.freeze_last_layer_epochs, self.clip_grad = freeze_last_layer_epochs, clip_grad
        self.iters_per_epoch: int | None = None  # set_run_length
        self.register_buffer("center", torch.zeros(1, out_dim))

    @classmethod
    def check_cfg(cls, cfg) -> None:
        super().check_cfg(cfg)
        if cfg.MODEL.HEAD != "dino":
            raise ConfigError(
                f"MODEL.HEAD {cfg.MODEL.HEAD} with MODEL.METHOD dino: DINO's loss "
                "reads the DINO head's K outputs; set MODEL.HEAD dino"
            )

    @classmethod
    def from_cfg(cls, cfg) -> "DINO":
        m, d = cfg.MODEL, cfg.MODEL.DINO
        backbone, dim = backbone_of_cfg(cfg)
        head = DINOHead(dim, m.HEAD_HIDDEN_DIM, m.FEAT_DIM, d.OUT_DIM, d.NORM_LAST_LAYER)
        model = cls(
            Encoder(backbone, head),
            d.OUT_DIM,
            m.MOMENTUM,
            m.MOMENTUM_COSINE,
            d.STUDENT_TEMP,
            d.TEACHER_TEMP,
            d.WARMUP_TEACHER_TEMP,
            d.WARMUP_TEACHER_TEMP_EPOCHS,
            d.CENTER_MOMENTUM,
            d.FREEZE_LAST_LAYER_EPOCHS,
            d.CLIP_GRAD,
        )
        model.er = ERObjective.from_cfg(cfg)
        return model

    def start_run(self, samples: int, iters_per_epoch: int, total_iters: int) -> None:
        """The temperature and freeze schedules are by epoch; the momentum's over the run."""
        self.iters_per_epoch = iters_per_epoch
        self.momentum_schedule.total_steps = total_iters

    def num_negatives(self, global_batch_size: int) -> int:
        return 0

    @property
    def iteration(self) -> int:
        """Optimizer steps taken so far (the momentum schedule counts them, checkpointed)."""
        return int(self.momentum_schedule.step)

    def _epoch(self) -> int:
        if self.iters_per_epoch is None:
            raise RuntimeError(
                "DINO: start_run was never called (the trainer calls it with the "
                "run's epoch length, for the temperature and freeze schedules)"
            )
        return self.iteration // self.iters_per_epoch

    def before_optimizer_step(self) -> None:
        self.adjust_gradients()

    def after_optimizer_step(self) -> None:
        """Teacher <- lambda_k teacher + (1 - lambda_k) student, after the step of step k."""
        self.momentum = self.momentum_schedule.next()
        ema_update(self.key_encoder, self.query_encoder, self.momentum)

    @torch.no_grad()
    def encode_keys(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's outputs, L2-normalised (the fresh-key probes)."""
        return self.key_encoder(images)

    def adjust_gradients(self) -> None:
        """After backward, before the optimizer step: each student gradient clipped to norm
        MODEL.DINO.CLIP_GRAD on its own (0: off), then none for the last layer while frozen."""
        student = self.query_encoder
        if self.clip_grad > 0:
            for p in student.parameters():
                if p.grad is not None:
                    scale = self.clip_grad / (p.grad.norm() + 1e-6)
                    p.grad.mul_(scale.clamp(max=1.0))
        self._epoch()  # the run length must be known
        if self.iteration < round(self.freeze_last_layer_epochs * self.iters_per_epoch):
            for p in student.head.last_layer.parameters():
                p.grad = None

    @torch.no_grad()
    def update_center(self, teacher_out: torch.Tensor) -> None:
        """C <- m C + (1 - m) * the mean teacher output over the global batch's global crops."""
        total = du.all_reduce_sum_(teacher_out.sum(dim=0, keepdim=True))
        count = len(teacher_out) * du.get_world_size()
        self.center.mul_(self.center_momentum).add_(total / count, alpha=1 - self.center_momentum)

    def forward(self, large1: torch.Tensor, large2: torch.Tensor, *small: torch.Tensor):
        """The loss, logits of the second global crop's student output against the first's
        teacher target (for the log's accuracy: do their most likely dimensions agree), and the
        term "cross_entropy"."""
        crops, batch = [large1, large2, *small], len(large1)
        student, teacher = self.query_encoder, self.key_encoder
        student_out = student.head(crop_features(student.backbone, crops))
        with torch.no_grad():
            teacher_out = teacher.head(teacher.backbone(torch.cat([large1, large2])))
        tau_t = teacher_temperature(
            self._epoch(),
            self.warmup_teacher_temp,
            self.teacher_temp,
            self.warmup_teacher_temp_epochs,
        )
        with torch.autocast(device_type=large1.device.type, enabled=False):
            student_out, teacher_out, center = at_least_float32(
                student_out, teacher_out, self.center
            )
            log_p = F.log_softmax(student_out / self.student_temp, dim=1).view(
                len(crops), batch, -1
            )
            targets = F.softmax((teacher_out - center) / tau_t, dim=1).view(2, batch, -1)
            # cross[i, v] = mean_b -sum_k P_t,i log P_s,v, without a (2, V, B, K) temporary
            cross = -torch.einsum("ibk,vbk->iv", targets, log_p) / batch
            own = torch.zeros_like(cross, dtype=torch.bool)
            own[0, 0] = own[1, 1] = True
            loss = cross[~own].mean()
            terms = {"cross_entropy": loss.detach()}
            if self.er is not None:
                h = sum(entropy(log_p[i].exp(), DISCRETE, self.er.kappa) for i in (0, 1)) / 2
                terms["entropy"] = h.detach()
                loss = self.er.loss(loss, h)
        self.update_center(teacher_out)
        return StepOutput(
            loss,
            agreement_logits(log_p[1].detach(), targets[0]),
            terms,
            ERPair(DISCRETE, log_p[1].detach().exp(), targets[0].detach()),
        )
