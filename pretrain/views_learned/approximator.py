"""The I_NCE approximator of InfoMin's view learning: one small encoder per view and a symmetric
InfoNCE between their embeddings over the batch (each image's other view is its positive, the other
images' views its negatives). I_NCE = log N - loss is the bound on I(view 1; view 2) it
certifies."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..losses import mutual_information_bound


def _conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
    # GroupNorm rather than BatchNorm: no running statistics, so train and eval agree and a step
    # with the approximator "fixed" really leaves it unchanged.
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(8, cout), nn.ReLU()]


class ViewEncoder(nn.Module):
    """A 4-layer ConvNet (strides 1, 2, 2, 2), average-pooled features and a linear embedding."""

    def __init__(self, in_channels: int, width: int = 32, embed_dim: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            *_conv(in_channels, width, 1),
            *_conv(width, 2 * width, 2),
            *_conv(2 * width, 4 * width, 2),
            *_conv(4 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.feature_dim = 4 * width
        self.head = nn.Linear(self.feature_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features for the classifier terms, L2-normalised embedding for InfoNCE)."""
        features = self.body(x)
        return features, F.normalize(self.head(features), dim=1)


def symmetric_info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean of InfoNCE view 1 -> view 2 and view 2 -> view 1, batch negatives, gradients into both
    sides (unlike losses.info_nce, whose keys are detached as MoCo's momentum keys must be)."""
    logits = z1 @ z2.t() / temperature
    labels = torch.arange(len(z1), device=z1.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def i_nce(loss: float, batch_size: int) -> float:
    """I_NCE (nats) of a symmetric InfoNCE loss over `batch_size` pairs (batch_size - 1
    negatives)."""
    return mutual_information_bound(loss, batch_size - 1)


class NCEApproximator(nn.Module):
    """f1, f2: one encoder per view (view 1 has `split` channels, view 2 the rest)."""

    def __init__(
        self,
        split: int,
        channels: int = 3,
        width: int = 32,
        embed_dim: int = 64,
        temperature: float = 0.1,
    ):
        super().__init__()
        self.width, self.embed_dim, self.temperature = width, embed_dim, temperature
        self.encoders = nn.ModuleList(
            [ViewEncoder(split, width, embed_dim), ViewEncoder(channels - split, width, embed_dim)]
        )

    @property
    def feature_dim(self) -> int:
        return self.encoders[0].feature_dim

    def forward(self, view1: torch.Tensor, view2: torch.Tensor):
        """(InfoNCE loss, features of view 1, features of view 2)."""
        (h1, z1), (h2, z2) = self.encoders[0](view1), self.encoders[1](view2)
        return symmetric_info_nce(z1, z2, self.temperature), h1, h2
