"""The view generator g of InfoMin's learned views (Tian et al. 2020, Sec. 4.2, App. B.5, Fig. 10):
a pixel-wise invertible flow. Each block is a coupling layer whose conditioning network is made of
1x1 convolutions only, so g maps every pixel's colour vector on its own and never mixes pixels; the
two views are then channel groups of X = g(x), and g decides what they share.

Volume-preserving ("vp") blocks are additive couplings (y2 = x2 + t(x1), Jacobian determinant 1);
non-volume-preserving ("nvp") blocks are affine couplings (y2 = x2 * exp(s(x1)) + t(x1)). The
channel given the role X1 (the conditioner) alternates between blocks: block i uses channel i mod C.
"""

from __future__ import annotations

import torch
import torch.nn as nn

KINDS = ("vp", "nvp")


class FlowConfigError(ValueError):
    """A generator's configuration (kind, block count, channels, split) is unusable."""


class CouplingBlock(nn.Module):
    """One coupling layer: channel `conditioner` (X1) passes through unchanged and sets a shift
    (and, if `affine`, a log-scale) for the other channels (X2), pixel by pixel."""

    def __init__(
        self, channels: int, conditioner: int, hidden: int, affine: bool, max_log_scale: float = 1.0
    ):
        super().__init__()
        self.conditioner, self.affine, self.max_log_scale = conditioner, affine, max_log_scale
        self.register_buffer(
            "rest",
            torch.tensor([c for c in range(channels) if c != conditioner], dtype=torch.long),
            persistent=False,
        )
        out = (channels - 1) * (2 if affine else 1)
        self.net = nn.Sequential(
            nn.Conv2d(1, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, out, 1),
        )
        # Zero last layer: every block starts as the identity, so g starts from the input colours.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _shift_and_log_scale(self, x1: torch.Tensor):
        h = self.net(x1)
        if not self.affine:
            return h, None
        shift, raw = h.chunk(2, dim=1)
        # A bounded log-scale keeps g (and its inverse) well conditioned during the min-max.
        return shift, self.max_log_scale * torch.tanh(raw)

    def _assemble(self, x1: torch.Tensor, rest: torch.Tensor) -> torch.Tensor:
        parts = list(rest.split(1, dim=1))
        parts.insert(self.conditioner, x1)
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[:, self.conditioner : self.conditioner + 1], x.index_select(1, self.rest)
        shift, log_scale = self._shift_and_log_scale(x1)
        y2 = x2 + shift if log_scale is None else x2 * torch.exp(log_scale) + shift
        return self._assemble(x1, y2)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = y[:, self.conditioner : self.conditioner + 1], y.index_select(1, self.rest)
        shift, log_scale = self._shift_and_log_scale(y1)
        x2 = y2 - shift if log_scale is None else (y2 - shift) * torch.exp(-log_scale)
        return self._assemble(y1, x2)

    def log_det(self, x: torch.Tensor) -> torch.Tensor:
        """log |det dg/dx| per image (0 for additive blocks)."""
        if not self.affine:
            return x.new_zeros(len(x))
        _, log_scale = self._shift_and_log_scale(x[:, self.conditioner : self.conditioner + 1])
        return log_scale.flatten(1).sum(1)


class PixelFlow(nn.Module):
    """g: a stack of coupling blocks; forward is g, `inverse` is g^-1."""

    def __init__(self, kind: str = "vp", blocks: int = 6, hidden: int = 64, channels: int = 3):
        super().__init__()
        if kind not in KINDS:
            raise FlowConfigError(f"generator kind {kind!r}: expected one of {', '.join(KINDS)}")
        if blocks < 1 or channels < 2 or hidden < 1:
            raise FlowConfigError(
                f"generator: blocks {blocks}, channels {channels}, "
                f"hidden {hidden}:"
                " need blocks >= 1, channels >= 2, hidden >= 1"
            )
        self.kind, self.num_blocks, self.hidden, self.channels = kind, blocks, hidden, channels
        self.blocks = nn.ModuleList(
            CouplingBlock(channels, i % channels, hidden, kind == "nvp") for i in range(blocks)
        )

    def spec(self) -> dict:
        """The constructor's arguments, saved beside the weights."""
        return {
            "kind": self.kind,
            "blocks": self.num_blocks,
            "hidden": self.hidden,
            "channels": self.channels,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for block in reversed(self.blocks):
            y = block.inverse(y)
        return y

    def log_det(self, x: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(len(x))
        for block in self.blocks:
            total = total + block.log_det(x)
            x = block(x)
        return total


def split_views(x: torch.Tensor, split: int) -> tuple[torch.Tensor, torch.Tensor]:
    """View 1 = channels [0, split), view 2 = channels [split, C) of X = g(x) (channel dim -3)."""
    channels = x.shape[-3]
    if not 0 < split < channels:
        raise FlowConfigError(
            f"view split {split}: must lie in 1..{channels - 1} for {channels} channels"
        )
    return x[..., :split, :, :], x[..., split:, :, :]
