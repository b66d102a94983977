"""Our AMDIM stepped side by side with a minimal independent implementation of the authors'
release (github:Philip-Bachman/amdim-public: costs.py NCE_MI_MULTI and LossMultiNCE, model.py
FakeRKHSConvNet, task_self_supervised.py's optimizer and train.py's warm-up), in float64, for
three Adam steps on the same batches, the lr through its warm-up and its step.

The reference below is written from the release's formulas, not from pretrain/: a ResNet-18
trunk (our named deviation from the release's encoder) whose pooled layer4, layer3 map and layer2
map take the release's 5x5 and 7x7 roles, each through FakeRKHSConvNet (1x1 conv - ReLU - 1x1
conv, plus a 1x1 shortcut with bias, then BN; no hidden BN: --use_bn 0). Per batch: the sources
r1 of both views and one random location of each view's r5 map (torch.randint over the
locations, view 1's draw first), the targets each view's maps as (D, B * L); raw scores
<src, trg> / sqrt(D), the regulariser 0.05 mean(raw^2), the scores tanh-clipped at tclip; per
positive location, log-softmax against the positive and every location of the other images
(the release's masked, max-shifted sums); the three costs averaged over their two directions and
summed with half the six regularisers; then Adam(betas (0.8, 0.999), eps 1e-8, weight decay
1e-5 in the gradient) at lr x min(1, (k + 1) / W) during the warm-up, x 0.2 after the step."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from pretrain.models.amdim import ResidualEmbedding
from tests.pretrain.reference_parts import (
    FEAT_DIM,
    assert_same,
    batches,
    start_from_the_release,
    project,
    trainer_step,
)

TCLIP, REG, LR, WARMUP, STEP_AT = 5.0, 0.05, 0.01, 2, 2
BETAS, EPS, WD = (0.8, 0.999), 1e-8, 1e-5


class FakeRKHSConvNet(nn.Module):
    """The release's embedding and its initialisation, its names as ours hold them (conv1, conv2,
    shortcut, bn_out)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(n_in, n_out, 1, bias=False)
        self.conv2 = nn.Conv2d(n_out, n_out, 1, bias=False)
        self.shortcut = nn.Conv2d(n_in, n_out, 1, bias=True)
        self.bn_out = nn.BatchNorm2d(n_out)
        # The release's init_weights: the branch's second conv at 0; where the embedding widens,
        # the shortcut U(-0.01, 0.01) with the identity on the input channels.
        nn.init.zeros_(self.conv2.weight)
        if n_out >= n_in:
            with torch.no_grad():
                self.shortcut.weight.uniform_(-0.01, 0.01)
                self.shortcut.weight[:, :, 0, 0].diagonal().fill_(1.0)

    def forward(self, x):
        return self.bn_out(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))


def tanh_clip(x, clip):
    return clip * torch.tanh(x / clip)


def release_model_scores(r_src, r_trg, mask_mat):
    """NCE_MI_MULTI._model_scores: (nce scores (n, L), lgt_reg)."""
    n_batch = mask_mat.size(1)
    n_locs = r_trg.size(1) // n_batch
    n_rkhs = r_src.size(1)
    mask_pos = mask_mat.unsqueeze(dim=2).expand(-1, -1, n_locs).to(r_src.dtype)
    mask_neg = 1.0 - mask_pos
    raw = torch.mm(r_src, r_trg).reshape(len(r_src), n_batch, n_locs) / n_rkhs**0.5
    lgt_reg = REG * (raw**2).mean()
    raw = tanh_clip(raw, TCLIP)
    pos = (mask_pos * raw).sum(dim=1)
    neg = ((mask_neg * raw) - TCLIP * mask_pos).reshape(len(r_src), -1)
    mask_neg = mask_neg.reshape(len(r_src), -1)
    neg_max = neg.max(dim=1, keepdim=True)[0]
    neg_sumexp = (mask_neg * torch.exp(neg - neg_max)).sum(dim=1, keepdim=True)
    all_lse = torch.log(torch.exp(pos - neg_max) + neg_sumexp)
    return (pos - neg_max) - all_lse, lgt_reg


class ReferenceAMDIM:
    def __init__(self):
        trunk = torchvision.models.resnet18(weights=None)
        trunk.fc = nn.Identity()
        self.net = nn.ModuleDict(
            dict(
                backbone=trunk,
                global_embedding=FakeRKHSConvNet(512, FEAT_DIM),
                local_embeddings=nn.ModuleList(
                    [FakeRKHSConvNet(256, FEAT_DIM), FakeRKHSConvNet(128, FEAT_DIM)]
                ),
            )
        ).double()
        self.k = 0
        self.m: dict[int, torch.Tensor] = {}
        self.v: dict[int, torch.Tensor] = {}

    def encode(self, x):
        t = self.net["backbone"]
        x = t.maxpool(t.relu(t.bn1(t.conv1(x))))
        l1 = t.layer1(x)
        l2 = t.layer2(l1)
        l3 = t.layer3(l2)
        l4 = t.layer4(l3)
        r1 = self.net["global_embedding"](F.adaptive_avg_pool2d(l4, 1))
        r5 = self.net["local_embeddings"][0](l3)
        r7 = self.net["local_embeddings"][1](l2)
        return r1, r5, r7

    def step(self, x1, x2) -> float:
        r1_x1, r5_x1, r7_x1 = self.encode(x1)
        r1_x2, r5_x2, r7_x2 = self.encode(x2)
        n, d = r1_x1.shape[:2]
        mask_mat = torch.eye(n, dtype=torch.float64)

        def sample(r):  # LossMultiNCE._sample_src_ftr with the one-hot location masks
            locs = r.shape[2] * r.shape[3]
            idx = torch.randint(0, locs, (n,))
            masks = torch.eye(locs, dtype=torch.bool).view(locs, 1, r.shape[2], r.shape[3])
            return torch.masked_select(r, masks[idx]).reshape(n, d)

        r1_src_1, r5_src_1 = r1_x1.reshape(n, d), sample(r5_x1)
        r1_src_2, r5_src_2 = r1_x2.reshape(n, d), sample(r5_x2)

        def targets(r):
            return r.permute(1, 0, 2, 3).reshape(d, -1)

        def g2l(src, trg):
            nce, reg = release_model_scores(src, targets(trg), mask_mat)
            return -nce.mean(), reg

        pairs = [
            (r1_src_1, r5_x2),
            (r1_src_2, r5_x1),
            (r1_src_1, r7_x2),
            (r1_src_2, r7_x1),
            (r5_src_1, r5_x2),
            (r5_src_2, r5_x1),
        ]
        results = [g2l(s, t) for s, t in pairs]
        losses = [0.5 * (results[i][0] + results[i + 1][0]) for i in (0, 2, 4)]
        lgt_reg = 0.5 * sum(r[1] for r in results)
        loss = sum(losses) + lgt_reg

        params = [p for p in self.net.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params)
        lr = LR * min(1.0, (self.k + 1) / WARMUP) * (0.2 if self.k >= STEP_AT else 1.0)
        t = self.k + 1
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(params, grads)):
                g = g + WD * p
                self.m[i] = BETAS[0] * self.m.get(i, torch.zeros_like(p)) + (1 - BETAS[0]) * g
                self.v[i] = BETAS[1] * self.v.get(i, torch.zeros_like(p)) + (1 - BETAS[1]) * g * g
                m_hat, v_hat = self.m[i] / (1 - BETAS[0] ** t), self.v[i] / (1 - BETAS[1] ** t)
                p -= lr * m_hat / (v_hat.sqrt() + EPS)
        self.k += 1
        return loss.item()


def test_amdim_steps_like_the_release():
    model, optimizer, scheduler = project(
        "amdim",
        "MODEL.HEAD",
        "mlp",
        "MODEL.AMDIM.LOCAL_STAGES",
        "(3, 2)",
        "MODEL.AMDIM.TCLIP",
        str(TCLIP),
        "MODEL.AMDIM.REG_WEIGHT",
        str(REG),
        "SOLVER.OPTIMIZER",
        "adam",
        "SOLVER.ADAM_BETAS",
        str(BETAS),
        "SOLVER.ADAM_EPS",
        str(EPS),
        "SOLVER.WEIGHT_DECAY",
        str(WD),
        "SOLVER.BASE_LR",
        str(LR),
        "SOLVER.LR_SCALING",
        "none",
        "SOLVER.WARMUP_EPOCHS",
        str(float(WARMUP)),
        "SOLVER.WARMUP_RULE",
        "one_based",
        "SOLVER.LR_STEPS",
        f"({STEP_AT},)",
        "SOLVER.LR_STEP_GAMMA",
        "0.2",
    )
    reference = ReferenceAMDIM()
    start_from_the_release(model.query_encoder, reference.net, "net")
    for step, (x1, x2) in enumerate(batches(3, size=64)):
        torch.manual_seed(100 + step)  # the 5->5 sources' random locations, drawn alike
        loss = trainer_step(model, optimizer, scheduler, x1, x2)
        torch.manual_seed(100 + step)
        expected = reference.step(x1, x2)
        assert abs(loss - expected) <= 1e-6, f"step {step}: loss {loss} vs {expected}"
        assert_same(model.query_encoder, reference.net, "encoder", step + 1)


def test_the_embeddings_start_as_the_releases():
    """FakeRKHSConvNet's init: the residual branch's second conv 0; the shortcut the identity on
    the input channels (uniform within 0.01 elsewhere) where it widens, torch's default where it
    narrows."""
    torch.manual_seed(0)
    widening = ResidualEmbedding(4, 8)
    assert not widening.conv2.weight.any()
    w = widening.shortcut.weight[:, :, 0, 0]
    assert torch.equal(w[:4, :4].diagonal(), torch.ones(4))
    off = ~torch.eye(8, 4, dtype=torch.bool)
    assert w[off].abs().max() <= 0.01
    narrowing = ResidualEmbedding(8, 4)
    assert narrowing.shortcut.weight.abs().max() > 0.01 or math.isclose(
        narrowing.shortcut.weight.abs().max().item(), 0.01
    )


@pytest.mark.parametrize("stages", ["(4, 2)", "(3,)"])
def test_local_stages_outside_the_trunk_are_refused(stages):
    from pretrain.common.errors import ConfigError
    from pretrain.config import load_cfg
    from pretrain.models.registry import build_model

    with pytest.raises(ConfigError, match="MODEL.AMDIM.LOCAL_STAGES"):
        build_model(
            load_cfg(
                opts=[
                    "MODEL.METHOD",
                    "amdim",
                    "MODEL.ARCH",
                    "resnet18",
                    "MODEL.AMDIM.LOCAL_STAGES",
                    stages,
                ]
            )
        )
