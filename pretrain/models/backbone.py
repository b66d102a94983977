"""torchvision ResNet / ResNeXt trunks without their classifier, optionally widened.

Names: any torchvision constructor (resnet18 ... resnet152, resnext101_32x8d, ...) plus
`resnext152_32x8d` (InfoMin's largest model, built from torchvision's ResNet class). WIDTH k
multiplies every stage's channels, stem included (the "ResNet-50 x2 / x4" of SimCLR and
PyContrast); Detectron2 reads such a trunk with STEM_OUT_CHANNELS 64k, RES2_OUT_CHANNELS 256k and
WIDTH_PER_GROUP 64k.

STEM picks the layers before layer1 for the image size (STEMS below); the stem keeps the names
conv1 / bn1, so conversion to Detectron2 is the same renaming for every stem.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ..common.errors import ConfigError
from .release_init import init_like_release

EXTRA_ARCHS = {
    "resnext152_32x8d": dict(block=Bottleneck, layers=[3, 8, 36, 3], groups=32, width_per_group=8),
}
TORCHVISION_LAYERS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}


@dataclass(frozen=True)
class Stem:
    """The layers before layer1: conv1 (kernel, stride) -> bn1 -> ReLU -> optional 3x3 max-pool of
    stride 2. Detectron2's side (detection/modeling.py) builds its stem from the same table."""

    kernel: int
    stride: int
    max_pool: bool

    @property
    def total_stride(self) -> int:
        return self.stride * (2 if self.max_pool else 1)


STEMS = {
    # He et al. 2016 for 224 px: stride 4 before layer1, 32 overall; a 32 px image ends at 1x1.
    "imagenet": Stem(kernel=7, stride=2, max_pool=True),
    # The CIFAR ResNet stem of SimCLR's CIFAR-10 variant and MoCo's CIFAR-10 demo: nothing is
    # downsampled before layer1, stride 8 overall, so 32 px ends at 4x4.
    "cifar": Stem(kernel=3, stride=1, max_pool=False),
    # For 64-96 px images (Tiny ImageNet, STL-10, the demo's 64 px crops): stride 16 overall, so
    # 64 px ends at 4x4 as 32 px does with the cifar stem. The conv runs at stride 1 and the
    # max-pool halves: the conv is evaluated at every position and the pool keeps each
    # neighbourhood's strongest response (as the ImageNet stem does), where a stride-2 conv would
    # sample one position in four; at full resolution it costs 1.7k multiply-adds per input pixel
    # against about 37k for ResNet-18's layer1.
    "tinyimagenet": Stem(kernel=3, stride=1, max_pool=True),
}


class UnknownStemError(ValueError):
    """A stem name (MODEL.STEM, STEM, --stem) that is no entry of STEMS."""


def stem_spec(name: str) -> Stem:
    if name not in STEMS:
        raise UnknownStemError(f"stem {name!r} is not one of {sorted(STEMS)} (MODEL.STEM)")
    return STEMS[name]


def replace_stem(trunk: ResNet, name: str) -> ResNet:
    """Swap torchvision's ImageNet stem for `name`'s, in place, with conv1's output channels (so a
    widened trunk stays wide). The ImageNet stem is left untouched: no weight is redrawn, so the
    default builds the same network from the same seed as before stems existed."""
    spec = stem_spec(name)
    if spec == STEMS["imagenet"]:
        return trunk
    channels = trunk.conv1.out_channels
    trunk.conv1 = nn.Conv2d(
        3,
        channels,
        kernel_size=spec.kernel,
        stride=spec.stride,
        padding=spec.kernel // 2,
        bias=False,
    )
    nn.init.kaiming_normal_(trunk.conv1.weight, mode="fan_out", nonlinearity="relu")
    trunk.maxpool = (
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if spec.max_pool else nn.Identity()
    )
    return trunk


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


def build_backbone(
    arch: str, width: int = 1, stem: str = "imagenet", zero_init_residual: bool = False
) -> tuple[nn.Module, int]:
    """Returns (trunk, feature_dim): the model with `fc` replaced by an identity and the stem
    `stem` (a key of STEMS), so its parameter names stay torchvision's (conv1, bn1, layer1..4) for
    conversion to Detectron2. `zero_init_residual`: each residual block's last BN scale starts at
    0, as torchvision's flag does (SimSiam's and MoCo v3's releases build their ResNets so)."""
    stem_spec(stem)  # an unknown stem fails before any weight is drawn
    if width != 1:
        if arch not in TORCHVISION_LAYERS:
            raise ConfigError(
                f"MODEL.WIDTH {width} is supported for {sorted(TORCHVISION_LAYERS)}, not {arch!r}"
            )
        trunk = WideResNet(*TORCHVISION_LAYERS[arch], width=width)
    elif arch in EXTRA_ARCHS:
        trunk = ResNet(**EXTRA_ARCHS[arch])
    else:
        constructor = getattr(torchvision.models, arch, None)
        if constructor is None or not arch.startswith(("resnet", "resnext", "wide_resnet")):
            raise ConfigError(
                f"MODEL.ARCH {arch!r} is not a ResNet / ResNeXt: use a torchvision "
                f"constructor name or one of {sorted(EXTRA_ARCHS)}"
            )
        trunk = constructor(weights=None)
    if zero_init_residual:  # after the constructor's own init, as torchvision does; no draws
        for block in trunk.modules():
            if isinstance(block, Bottleneck):
                nn.init.zeros_(block.bn3.weight)
            elif isinstance(block, BasicBlock):
                nn.init.zeros_(block.bn2.weight)
    feature_dim = trunk.fc.in_features
    trunk.fc = nn.Identity()
    return replace_stem(trunk, stem), feature_dim


def backbone_of_cfg(cfg) -> tuple[nn.Module, int]:
    """build_backbone with MODEL.ARCH, WIDTH, STEM and ZERO_INIT_RESIDUAL, its convs drawn by
    MODEL.INIT (release_init.py)."""
    m = cfg.MODEL
    trunk, dim = build_backbone(m.ARCH, m.WIDTH, m.STEM, m.ZERO_INIT_RESIDUAL)
    return init_like_release(trunk, m.INIT), dim
