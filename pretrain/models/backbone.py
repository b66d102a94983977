"""torchvision ResNet / ResNeXt trunks without their classifier."""
from __future__ import annotations

import torch.nn as nn
import torchvision


def build_backbone(arch: str) -> tuple[nn.Module, int]:
    """Returns (trunk, feature_dim): the torchvision model with `fc` replaced by an identity, so its
    parameter names stay torchvision's (conv1, bn1, layer1..4) for conversion to Detectron2."""
    constructor = getattr(torchvision.models, arch, None)
    if constructor is None or not arch.startswith(("resnet", "resnext", "wide_resnet")):
        raise ValueError(f"MODEL.ARCH {arch!r} is not a torchvision ResNet/ResNeXt constructor")
    trunk = constructor(weights=None)
    feature_dim = trunk.fc.in_features
    trunk.fc = nn.Identity()
    return trunk, feature_dim
