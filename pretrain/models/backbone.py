"""torchvision ResNet / ResNeXt trunks without their classifier, optionally widened.

Names: any torchvision constructor (resnet18 ... resnet152, resnext101_32x8d, ...) plus
`resnext152_32x8d` (InfoMin's largest model, built from torchvision's ResNet class). WIDTH k
multiplies every stage's channels, stem included (the "ResNet-50 x2 / x4" of SimCLR and
PyContrast); Detectron2 reads such a trunk with STEM_OUT_CHANNELS 64k, RES2_OUT_CHANNELS 256k and
WIDTH_PER_GROUP 64k.
"""
from __future__ import annotations

import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

EXTRA_ARCHS = {
    "resnext152_32x8d": dict(block=Bottleneck, layers=[3, 8, 36, 3], groups=32, width_per_group=8),
}
TORCHVISION_LAYERS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet34": (BasicBlock, [3, 4, 6, 3]),
                      "resnet50": (Bottleneck, [3, 4, 6, 3]), "resnet101": (Bottleneck, [3, 4, 23, 3]),
                      "resnet152": (Bottleneck, [3, 8, 36, 3])}


class WideResNet(ResNet):
    """torchvision's ResNet with every stage (and the stem) `width` times wider; parameter names
    are torchvision's, so conversion to Detectron2 is unchanged."""

    def __init__(self, block, layers, width: int, **kwargs):
        self._width = width
        self._stages_built = 0
        super().__init__(block, layers, **kwargs)
        stem = 64 * width
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.fc = nn.Linear(512 * block.expansion * width, kwargs.get("num_classes", 1000))

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if self._stages_built == 0:
            self.inplanes = 64 * self._width  # the widened stem's output
        self._stages_built += 1
        return super()._make_layer(block, planes * self._width, blocks, stride, dilate)


def build_backbone(arch: str, width: int = 1) -> tuple[nn.Module, int]:
    """Returns (trunk, feature_dim): the model with `fc` replaced by an identity, so its parameter
    names stay torchvision's (conv1, bn1, layer1..4) for conversion to Detectron2."""
    if width != 1:
        if arch not in TORCHVISION_LAYERS:
            raise ValueError(f"MODEL.WIDTH {width} is supported for {sorted(TORCHVISION_LAYERS)}, "
                             f"not {arch!r}")
        trunk = WideResNet(*TORCHVISION_LAYERS[arch], width=width)
    elif arch in EXTRA_ARCHS:
        trunk = ResNet(**EXTRA_ARCHS[arch])
    else:
        constructor = getattr(torchvision.models, arch, None)
        if constructor is None or not arch.startswith(("resnet", "resnext", "wide_resnet")):
            raise ValueError(f"MODEL.ARCH {arch!r} is not a ResNet / ResNeXt: use a torchvision "
                             f"constructor name or one of {sorted(EXTRA_ARCHS)}")
        trunk = constructor(weights=None)
    feature_dim = trunk.fc.in_features
    trunk.fc = nn.Identity()
    return trunk, feature_dim
