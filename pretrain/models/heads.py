"""Projection heads that map backbone features to the contrastive embedding."""
from __future__ import annotations

import torch.nn as nn


def build_head(kind: str, in_dim: int, hidden_dim: int, out_dim: int) -> nn.Module:
    """`linear` is MoCo v1's fc; `mlp` is MoCo v2's / InfoMin's fc-ReLU-fc."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True),
                             nn.Linear(hidden_dim, out_dim))
    raise ValueError(f"MODEL.HEAD {kind!r}: expected 'linear' or 'mlp'")
