"""Our DINO stepped side by side with a minimal independent implementation of the paper's
Algorithm 1 (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers"),
in float64, for three SGD steps of a four-step run on the same crops: two global and two local
per image, with every schedule moving (teacher temperature warm-up, EMA momentum cosine, the
last layer's freeze, gradient clipping).

The reference below is written from the paper, not from pretrain/: student g_s and teacher g_t
of the same architecture (ResNet-18 trunk, then the DINO head: 3-layer MLP with GELU, the
bottleneck L2-normalised, a weight-normalised last layer without bias, torch's weight_norm, its
g fixed at 1), the teacher starting as the student. Per batch: the student sees every crop (crops
of one size through the trunk as one batch, as the release), the teacher the two global ones;
H(t, s) = -sum softmax((t - C) / tau_t) log softmax(s / tau_s), averaged over the batch and over
all (teacher crop, student crop) pairs but a crop with itself (Algorithm 1 for two crops, Sec. 3.1
for multi-crop); an SGD step on the student after each gradient is clipped to norm CLIP on its own
and, during the first epoch, the last layer's dropped (the release's recipe), the rate on its
cosine; then
g_t <- l g_t + (1 - l) g_s with l on a cosine from l_base to 1, and
C <- m C + (1 - m) mean(t1, t2). tau_t is linear from 0.04 to 0.07 over the first epochs.

DINO-ER (Rodríguez-Gálvez et al. 2023) on the same reference: the loss minus w times the
release's discrete entropy (tests/pretrain/reference_er.py) of the student's batch-mean
softmax(s / tau_s), averaged over the two global crops."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests.pretrain.reference_parts import (
    BATCH,
    FEAT_DIM,
    HIDDEN,
    ReferenceOptimizer,
    assert_same,
    start_from_the_release,
    cosine_lr,
    network,
    project,
    trainer_step,
)
from tests.pretrain.reference_er import release_entropy
from tests.pretrain.test_swav_reference import NUM_SMALL, multi_crop_batches

OUT_DIM, TPS, TPT_START, TPT_END, TPT_EPOCHS = 32, 0.1, 0.04, 0.07, 3
L_BASE, TOTAL, CENTER_M, CLIP, FREEZE_STEPS = 0.9, 4, 0.9, 0.5, 1
ENTROPY_WEIGHT = 0.7


class ReferenceHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(512, HIDDEN),
            nn.GELU(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.GELU(),
            nn.Linear(HIDDEN, FEAT_DIM),
        )
        with warnings.catch_warnings():  # the old API: its parameter names are weight_g, weight_v
            warnings.simplefilter("ignore", FutureWarning)
            self.last_layer = nn.utils.weight_norm(nn.Linear(FEAT_DIM, OUT_DIM, bias=False))
        # The release's DINOHead: trunc_normal(std 0.02) weights and zero biases in the MLP
        # (_init_weights, applied before the last layer exists); the last layer torch's default
        # with its norm g filled with 1 and frozen (norm_last_layer).
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        with torch.no_grad():
            self.last_layer.weight_g.fill_(1.0)
        self.last_layer.weight_g.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


class ReferenceDINO:
    def __init__(self, er: bool = False):
        self.er = er
        self.gs, self.gt = network(ReferenceHead()), network(ReferenceHead())
        self.C = torch.zeros(OUT_DIM, dtype=torch.float64)
        # The release's groups (utils.get_params_groups): no weight decay on biases and norms.
        self.optimizer = ReferenceOptimizer(lars=False, decay_1d=False)
        self.k = 0
        self.clipped = 0

    def start(self) -> None:
        self.gt.load_state_dict(self.gs.state_dict())
        for p in self.gt.parameters():
            p.requires_grad_(False)

    def step(self, crops: list[torch.Tensor]) -> float:
        f = self.gs["backbone"]
        s = self.gs["head"](torch.cat([f(torch.cat(crops[:2])), f(torch.cat(crops[2:]))]))
        s = s.split(BATCH)
        with torch.no_grad():
            t = self.gt["head"](self.gt["backbone"](torch.cat(crops[:2]))).split(BATCH)
        tpt = (
            torch.linspace(TPT_START, TPT_END, TPT_EPOCHS)[self.k].item()
            if self.k < TPT_EPOCHS
            else TPT_END
        )

        def H(t_, s_):
            t_ = t_.detach()
            s_ = F.log_softmax(s_ / TPS, dim=1)
            t_ = F.softmax((t_ - self.C) / tpt, dim=1)
            return -(t_ * s_).sum(dim=1).mean()

        pairs = [(i, v) for i in (0, 1) for v in range(len(s)) if v != i]
        loss = sum(H(t[i], s[v]) for i, v in pairs) / len(pairs)
        if self.er:
            loss = (
                loss
                - ENTROPY_WEIGHT
                * sum(release_entropy(F.softmax(s[i] / TPS, dim=1), "discrete") for i in (0, 1))
                / 2
            )

        named = [(n, p) for n, p in self.gs.named_parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, [p for _, p in named])
        kept = []
        for (name, p), g in zip(named, grads):
            norm = g.norm()
            if norm > CLIP:
                g = g * (CLIP / (norm + 1e-6))
                self.clipped += 1
            if self.k < FREEZE_STEPS and name.startswith("head.last_layer."):
                continue  # the last layer is last: the other velocities keep their index
            kept.append((p, g))
        rate = cosine_lr(self.k, TOTAL)
        self.optimizer.step([p for p, _ in kept], [g for _, g in kept], [rate] * len(kept))

        lam = 1 - (1 - L_BASE) * (math.cos(math.pi * self.k / TOTAL) + 1) / 2
        with torch.no_grad():
            for pt, ps in zip(self.gt.parameters(), self.gs.parameters()):
                pt.copy_(lam * pt + (1 - lam) * ps)
            self.C = CENTER_M * self.C + (1 - CENTER_M) * torch.cat(t).mean(dim=0)
        self.k += 1
        return loss.item()


@pytest.mark.parametrize("er", [False, True], ids=["dino", "dino-er"])
def test_dino_steps_like_algorithm_1_of_the_paper(er):
    er_opts = (
        ["MODEL.ER.OBJECTIVE", "True", "MODEL.ER.ENTROPY_WEIGHT", str(ENTROPY_WEIGHT)] if er else []
    )
    model, optimizer, scheduler = project(
        "dino",
        "MODEL.MOMENTUM",
        str(L_BASE),
        "MODEL.MOMENTUM_COSINE",
        "True",
        "MODEL.DINO.OUT_DIM",
        str(OUT_DIM),
        "MODEL.DINO.STUDENT_TEMP",
        str(TPS),
        "MODEL.DINO.WARMUP_TEACHER_TEMP",
        str(TPT_START),
        "MODEL.DINO.TEACHER_TEMP",
        str(TPT_END),
        "MODEL.DINO.WARMUP_TEACHER_TEMP_EPOCHS",
        str(TPT_EPOCHS),
        "MODEL.DINO.CENTER_MOMENTUM",
        str(CENTER_M),
        "MODEL.DINO.CLIP_GRAD",
        str(CLIP),
        "MODEL.DINO.FREEZE_LAST_LAYER_EPOCHS",
        str(float(FREEZE_STEPS)),
        "DATA.MULTI_CROP.NUM_SMALL",
        str(NUM_SMALL),
        "SOLVER.DECAY_BIAS_AND_NORM",
        "False",
        *er_opts,
        total_iters=TOTAL,
    )
    model.start_run(0, iters_per_epoch=1, total_iters=TOTAL)
    reference = ReferenceDINO(er)
    start_from_the_release(model.query_encoder, reference.gs, "student", model.key_encoder)
    reference.start()
    last_layer = model.query_encoder.head.last_layer.weight_v.detach().clone()
    for step, crops in enumerate(multi_crop_batches(3)):
        loss = trainer_step(model, optimizer, scheduler, *crops)
        assert abs(loss - reference.step(crops)) <= 1e-6, f"step {step}: loss"
        assert_same(model.query_encoder, reference.gs, "student", step + 1)
        assert_same(model.key_encoder, reference.gt, "teacher", step + 1)
        diff = (model.center.squeeze(0) - reference.C).abs().max().item()
        assert diff <= 1e-6, f"step {step + 1}: centre differs by {diff:.2e}"
        if step + 1 == FREEZE_STEPS:  # frozen through the first epoch, trained after
            assert torch.equal(model.query_encoder.head.last_layer.weight_v, last_layer)
    assert not torch.equal(model.query_encoder.head.last_layer.weight_v, last_layer)
    assert reference.clipped > 0  # the clipping took part
    assert model.center.abs().sum() > 0 and int(model.momentum_schedule.step) == 3
