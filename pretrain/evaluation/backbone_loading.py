"""A backbone to evaluate: from any checkpoint format pretrain.formats reads, or freshly initialised."""
from __future__ import annotations

import torch.nn as nn

from ..formats import ConversionError, detect_format, load_any, read_backbone
from ..models.backbone import build_backbone


def load_backbone(arch: str, checkpoint: str = "", encoder: str = "query",
                  width: int = 1) -> tuple[nn.Module, int]:
    """Returns (trunk, feature_dim); every backbone tensor must load (strict)."""
    trunk, dim = build_backbone(arch, width)
    if not checkpoint:
        return trunk, dim
    try:
        ckpt = load_any(checkpoint)
        state, _ = read_backbone(ckpt, detect_format(ckpt), encoder)
    except ConversionError as err:
        raise SystemExit(f"error: checkpoint {checkpoint}: {err}") from None
    missing, unexpected = trunk.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"error: checkpoint {checkpoint} does not fit MODEL.ARCH {arch}: "
                         f"missing {missing[:4]}, unexpected {unexpected[:4]}")
    return trunk, dim
