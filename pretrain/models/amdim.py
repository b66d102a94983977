"""AMDIM (Bachman, Hjelm & Buchwalter 2019, "Learning Representations by Maximizing Mutual
Information Across Views"), on a ResNet trunk so that it converts to Detectron2.

Two independently augmented views x1, x2 of each image go through one encoder. The global
feature of a view (the trunk's pooled last stage) and the local feature maps of two earlier
stages (MODEL.AMDIM.LOCAL_STAGES: the release's 5x5 and 7x7 maps) each pass a 1x1 residual
embedding into a shared space of MODEL.FEAT_DIM dimensions (the release's n_rkhs; its
FakeRKHSConvNet: 1x1 conv - ReLU - 1x1 conv initialised to 0, plus a 1x1 shortcut initialised
near the identity, then batch norm). Each source vector of one view is scored against every
location of the other view's map, for every image of the batch:
    s = tclip * tanh(<src, trg> / sqrt(D) / tclip)      (a soft clip to [-tclip, tclip])
and each positive location (same image) is classified against all locations of the other images
(NCE over the batch: -log exp(s+) / (exp(s+) + sum exp(s-)), averaged over positives). The
release's three predictions, each both ways and averaged over the two:
    global -> first local stage ("1->5"), global -> second local stage ("1->7"), and a random
    location of the first local stage -> the first local stage ("5->5"),
plus 0.05 x the mean squared raw score of each, halved over the directions (the release's
lgt_reg). The release's costs.py (NCE_MI_MULTI, LossMultiNCE) and model.py are what the
reference test steps.

Deliberate deviations, named: the trunk is a ResNet (the release's own encoder is not built
here), the global feature gets the same 1x1 residual embedding as the local ones (the release's
last block already outputs n_rkhs channels, so its global embedding is the identity), and the
release's online evaluation classifiers are left out (they read detached features, so the
encoder's training is unchanged; kNN and the linear readout measure it instead). Across
processes the targets of the whole global batch are scored (gathered with their gradients), as
the release scores its whole batch on one node. No I_NCE is printed: each term contrasts with a
different number of negatives (the other images times each map's locations) and the clip bounds
the scores; the log's I_ER, between the two views' global embeddings, is shown instead."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import distributed as du
from ..common.errors import ConfigError
from ..entropy_reconstruction import SPHERE, ERPair
from .backbone import backbone_of_cfg
from .method import VIEWS_PAIR, Method, StepOutput, register_method


class ResidualEmbedding(nn.Module):
    """The release's FakeRKHSConvNet: BN(shortcut(x) + conv2(ReLU(bn_hid(conv1(x))))), 1x1
    convolutions; conv2 starts at 0 (the branch inert), the shortcut at the identity on the
    first in-channels (uniform(-0.01, 0.01) elsewhere) where out >= in; bn_hid only with
    `hidden_bn` (the release's --use_bn, off by default)."""

    def __init__(self, in_channels: int, out_channels: int, hidden_bn: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn_hid = nn.BatchNorm2d(out_channels) if hidden_bn else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=True)
        self.bn_out = nn.BatchNorm2d(out_channels)
        nn.init.zeros_(self.conv2.weight)
        if out_channels >= in_channels:
            with torch.no_grad():
                self.shortcut.weight.uniform_(-0.01, 0.01)
                eye = torch.arange(in_channels)
                self.shortcut.weight[eye, eye, 0, 0] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.conv2(F.relu(self.bn_hid(self.conv1(x))))
        return self.bn_out(branch + self.shortcut(x))


def trunk_stages(trunk: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The feature maps after layer1 .. layer4 of a torchvision-style ResNet."""
    x = trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(images))))
    maps = []
    for stage in (trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4):
        x = stage(x)
        maps.append(x)
    return maps


def stage_channels(trunk: nn.Module, stage: int) -> int:
    """Output channels of layer<stage> (1-4)."""
    last_block = list(getattr(trunk, f"layer{stage}").children())[-1]
    last_bn = [m for m in last_block.modules() if isinstance(m, nn.BatchNorm2d)][-1]
    return last_bn.num_features


class AMDIMEncoder(nn.Module):
    """The trunk and the embeddings: global (pooled last stage) and two local stages."""

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        embed_dim: int,
        local_stages: tuple[int, int],
        hidden_bn: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.local_stages = tuple(local_stages)
        self.global_embedding = ResidualEmbedding(feature_dim, embed_dim, hidden_bn)
        self.local_embeddings = nn.ModuleList(
            ResidualEmbedding(stage_channels(backbone, s), embed_dim, hidden_bn)
            for s in self.local_stages
        )

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(global (N, D), [local maps (N, D, H, W) of each local stage])."""
        maps = trunk_stages(self.backbone, images)
        pooled = F.adaptive_avg_pool2d(maps[-1], 1)
        global_feature = self.global_embedding(pooled).flatten(1)
        local = [embed(maps[s - 1]) for embed, s in zip(self.local_embeddings, self.local_stages)]
        return global_feature, local

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The global embedding, L2-normalised (the fresh-key probes' and I_ER's)."""
        return F.normalize(self.embed(images)[0], dim=1)


def global_to_local_nce(
    sources: torch.Tensor, targets: torch.Tensor, offset: int, tclip: float, reg_weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NCE of each source (N, D) (this process's images, rows offset .. offset + N - 1 of the
    global batch) predicting every location of its own image's map among all locations of the
    other images' maps (targets: (B, D, H, W), the global batch). Returns (loss, the score
    regulariser, the (N, B) location-mean clipped scores for the log's accuracy, each row's own
    image first)."""
    n, dim = sources.shape
    raw = torch.einsum("nd,bdl->nbl", sources, targets.flatten(2)) / math.sqrt(dim)
    regulariser = reg_weight * raw.pow(2).mean()
    scores = tclip * torch.tanh(raw / tclip)
    rows = torch.arange(n, device=scores.device)
    own = torch.zeros(scores.shape[:2], dtype=torch.bool, device=scores.device)
    own[rows, offset + rows] = True
    positives = scores[rows, offset + rows]  # (N, L)
    negatives = scores.masked_fill(own.unsqueeze(2), float("-inf")).flatten(1)  # (N, B * L)
    log_negatives = torch.logsumexp(negatives, dim=1, keepdim=True)
    nce = positives - torch.logaddexp(positives, log_negatives)
    mean_scores = scores.detach().mean(dim=2)
    b = mean_scores.shape[1]
    logits = torch.cat([mean_scores[own].view(n, 1), mean_scores[~own].view(n, b - 1)], dim=1)
    return -nce.mean(), regulariser, logits


@register_method("amdim")
class AMDIM(Method):
    """Terms "global->stage<a>", "global->stage<b>", "stage<a>->stage<a>" (each the mean of its
    two directions) and "logit_reg"; no I_NCE (see the module's docstring)."""

    views = VIEWS_PAIR
    paper_head = None  # the embeddings are AMDIM's own, whatever MODEL.HEAD says

    def __init__(
        self, encoder: AMDIMEncoder, tclip: float, reg_weight: float, temperature: float = 0.2
    ):
        """`temperature` only scales the fresh-key probes (evaluation/fresh_keys.py)."""
        super().__init__()
        self.query_encoder = encoder
        self.tclip, self.reg_weight = tclip, reg_weight
        self.temperature = temperature

    @classmethod
    def check_cfg(cls, cfg) -> None:
        super().check_cfg(cfg)
        a = cfg.MODEL.AMDIM
        stages = tuple(a.LOCAL_STAGES)
        if len(stages) != 2 or not all(s in (1, 2, 3) for s in stages):
            raise ConfigError(
                f"MODEL.AMDIM.LOCAL_STAGES {stages}: expected two stages among "
                "1, 2, 3 (the trunk's layer1..layer3; the global feature is "
                "layer4's)"
            )
        if a.TCLIP <= 0:
            raise ConfigError(f"MODEL.AMDIM.TCLIP {a.TCLIP}: must be positive (release: 20)")

    @classmethod
    def from_cfg(cls, cfg) -> "AMDIM":
        a = cfg.MODEL.AMDIM
        backbone, dim = backbone_of_cfg(cfg)
        encoder = AMDIMEncoder(
            backbone, dim, cfg.MODEL.FEAT_DIM, tuple(a.LOCAL_STAGES), a.HIDDEN_BN
        )
        return cls(encoder, a.TCLIP, a.REG_WEIGHT, cfg.MODEL.TEMPERATURE)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> StepOutput:
        """The loss, the first term's location-mean scores (positive in column 0) for the log's
        accuracy, and the terms."""
        encoder = self.query_encoder
        first, second = (f"stage{s}" for s in encoder.local_stages)
        g1, (a1, b1) = encoder.embed(view1)
        g2, (a2, b2) = encoder.embed(view2)
        # One random location of the first local map per image, view 1's then view 2's (the
        # release's order): the source of the local -> local prediction.
        n, dim, height, width = a1.shape
        locations = [torch.randint(0, height * width, (n,)).to(a1.device) for _ in range(2)]
        rows = torch.arange(n, device=a1.device)
        s1, s2 = (a.flatten(2)[rows, :, where] for a, where in zip((a1, a2), locations))
        offset = du.get_rank() * n
        gathered = {
            name: du.all_gather_with_grad(t)
            for name, t in (("a1", a1), ("a2", a2), ("b1", b1), ("b2", b2))
        }
        pairs = {
            f"global->{first}": ((g1, gathered["a2"]), (g2, gathered["a1"])),
            f"global->{second}": ((g1, gathered["b2"]), (g2, gathered["b1"])),
            f"{first}->{first}": ((s1, gathered["a2"]), (s2, gathered["a1"])),
        }
        terms, loss, regulariser, logits = {}, 0, 0, None
        for name, directions in pairs.items():
            both = [
                global_to_local_nce(src, trg, offset, self.tclip, self.reg_weight)
                for src, trg in directions
            ]
            term = 0.5 * (both[0][0] + both[1][0])
            regulariser = regulariser + 0.5 * (both[0][1] + both[1][1])
            loss = loss + term
            terms[name] = term.detach()
            if logits is None:
                logits = both[0][2]
        terms["logit_reg"] = regulariser.detach()
        return StepOutput(
            loss + regulariser,
            logits,
            terms,
            ERPair(SPHERE, F.normalize(g1.detach(), dim=1), F.normalize(g2.detach(), dim=1)),
        )
