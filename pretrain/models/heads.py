"""Projection heads that map backbone features to the contrastive embedding, and the predictors
of the methods that have one (BYOL, SimSiam, MoCo v3)."""

from __future__ import annotations

import torch.nn as nn

from ..common.errors import ConfigError
from .release_init import init_like_release

# The projection MLPs of the papers' ResNet recipes, as (layers, last_bn, last_bias): hidden
# layers are Linear (no bias: BN follows) - BN - ReLU; the last Linear is followed by
#   "none": nothing - BYOL's projector (Grill et al. 2020, App. A; its release's last Linear has no
#           bias: byol/utils/networks.py, hk.Linear(output_size, with_bias=False));
#   "scale": BN with a learned scale but no shift - SimCLR's (official code: the last layer's BN
#            has `center=False`);
#   "plain": BN without scale or shift - SimSiam's (Chen & He 2021, Sec. 4.1, "BN ... no ReLU";
#            official code: affine-free BN) and MoCo v3's (Chen, Xie, He 2021, App. / code).
#   SwAV's projection (Caron et al. 2020, App. A: 2048 - BN - ReLU - 128) is BYOL's shape: "none",
#   its last Linear with a bias (the release's nn.Linear default).
METHOD_HEADS = {
    "simclr": (2, "scale", False),
    "byol": (2, "none", False),
    "simsiam": (3, "plain", False),
    "mocov3": (2, "plain", False),
    "swav": (2, "none", True),
}


def build_mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    layers: int = 2,
    last_bn: str = "none",
    last_bias: bool = True,
) -> nn.Sequential:
    """`layers` Linear layers with BN + ReLU between them and `last_bn` after the last (see
    METHOD_HEADS); the last Linear has a bias only with `last_bias` and no BN after it. A BN
    layer whose shift is not learned ("scale") keeps its bias at zero, frozen, so that the layer
    has BatchNorm1d's parameter names."""
    if last_bn not in ("none", "scale", "plain"):
        raise ValueError(f"last_bn {last_bn!r}: expected 'none', 'scale' or 'plain'")
    modules: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        modules += [
            nn.Linear(dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
        ]
        dim = hidden_dim
    modules.append(nn.Linear(dim, out_dim, bias=last_bias and last_bn == "none"))
    if last_bn == "plain":
        modules.append(nn.BatchNorm1d(out_dim, affine=False))
    elif last_bn == "scale":
        bn = nn.BatchNorm1d(out_dim)
        bn.bias.requires_grad_(False)
        modules.append(bn)
    return nn.Sequential(*modules)


def build_head(kind: str, in_dim: int, hidden_dim: int, out_dim: int) -> nn.Module:
    """`linear` is MoCo v1's fc; `mlp` is MoCo v2's / InfoMin's fc-ReLU-fc; `simclr`, `byol`,
    `simsiam`, `mocov3` are those papers' projection MLPs with BN (METHOD_HEADS)."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":
        return nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
        )
    if kind in METHOD_HEADS:
        layers, last_bn, last_bias = METHOD_HEADS[kind]
        return build_mlp(in_dim, hidden_dim, out_dim, layers, last_bn, last_bias)
    raise ConfigError(
        f"MODEL.HEAD {kind!r}: expected 'linear', 'mlp' or one of {', '.join(METHOD_HEADS)}"
    )


def build_predictor(method: str, dim: int, hidden_dim: int) -> nn.Sequential:
    """The predictor MLP on top of the projection: Linear - BN - ReLU - Linear, no BN at the
    output (BYOL App. A: "the same architecture as g"; SimSiam Sec. 4.1: a bottleneck whose
    output fc has no BN or ReLU). MoCo v3's and BYOL's releases build it without the output
    bias (MoCo v3 builds every MLP Linear without bias; BYOL's MLP ends with_bias=False);
    SimSiam's keeps it (nn.Linear(pred_dim, dim))."""
    return build_mlp(dim, hidden_dim, dim, layers=2, last_bias=method == "simsiam")


def head_of_cfg(cfg, in_dim: int) -> nn.Module:
    """MODEL.HEAD's projection head on `in_dim` features, drawn by MODEL.INIT."""
    m = cfg.MODEL
    return init_like_release(build_head(m.HEAD, in_dim, m.HEAD_HIDDEN_DIM, m.FEAT_DIM), m.INIT)


def predictor_of_cfg(cfg, method: str) -> nn.Sequential:
    """`method`'s predictor (build_predictor) for MODEL.FEAT_DIM, drawn by MODEL.INIT."""
    m = cfg.MODEL
    return init_like_release(build_predictor(method, m.FEAT_DIM, m.PREDICTOR_HIDDEN_DIM), m.INIT)
