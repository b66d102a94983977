"""Model pieces the published transfer recipes need and stock Detectron2 lacks: the C4 head with an
extra norm, and ResNet / ResNet-FPN backbones with the small-image stems of pretraining. Importing
this module registers them."""

from __future__ import annotations

import math

import fvcore.nn.weight_init as weight_init
import torch.nn as nn
import torch.nn.functional as F
from detectron2.layers import CNNBlockBase, Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, ROI_HEADS_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool
from detectron2.modeling.backbone.resnet import BasicBlock, ResNet, build_resnet_backbone
from detectron2.modeling.roi_heads import Res5ROIHeads

from pretrain.models.backbone import stem_spec

RES5_BLOCKS_BASIC = {18: 2, 34: 3}


class SmallImageStem(CNNBlockBase):
    """A ResNet stem of pretraining's table (pretrain/models/backbone.py STEMS): conv1 with its
    norm, ReLU, an optional 3x3 max-pool of stride 2. Its parameters have the names of Detectron2's
    BasicStem (stem.conv1.weight, stem.conv1.norm.*), so converted weights land by the same
    renaming; its stride (1 for cifar, 2 for tinyimagenet) sets every later feature's stride."""

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 64,
        norm: str = "BN",
        stem_type: str = "cifar",
    ):
        spec = stem_spec(stem_type)
        super().__init__(in_channels, out_channels, spec.total_stride)
        self.max_pool = spec.max_pool
        self.conv1 = Conv2d(
            in_channels,
            out_channels,
            kernel_size=spec.kernel,
            stride=spec.stride,
            padding=spec.kernel // 2,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        weight_init.c2_msra_fill(self.conv1)

    def forward(self, x):
        x = F.relu_(self.conv1(x))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1) if self.max_pool else x


@BACKBONE_REGISTRY.register()
def build_resnet_backbone_with_stem_type(cfg, input_shape: ShapeSpec) -> ResNet:
    """Detectron2's ResNet with the stem MODEL.RESNETS.STEM_TYPE names; "imagenet" is the stock
    build. The stages are the stock builder's, only the stem is swapped, so every other RESNETS
    key means what it does for build_resnet_backbone."""
    stem_type = cfg.MODEL.RESNETS.STEM_TYPE
    if stem_type == "imagenet":
        return build_resnet_backbone(cfg, input_shape)
    unfrozen = cfg.clone()
    unfrozen.defrost()
    unfrozen.MODEL.BACKBONE.FREEZE_AT = 0  # frozen once below, with the new stem in place
    stock = build_resnet_backbone(unfrozen, input_shape)
    stem = SmallImageStem(
        input_shape.channels, cfg.MODEL.RESNETS.STEM_OUT_CHANNELS, cfg.MODEL.RESNETS.NORM, stem_type
    )
    # ResNet derives each output's stride from the stem's, so it is built again around the stages.
    return ResNet(
        stem,
        [list(getattr(stock, name)) for name in stock.stage_names],
        out_features=cfg.MODEL.RESNETS.OUT_FEATURES,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
    )


@BACKBONE_REGISTRY.register()
def build_resnet_fpn_backbone_with_stem_type(cfg, input_shape: ShapeSpec) -> FPN:
    """FPN over build_resnet_backbone_with_stem_type. FPN names its levels by stride (p<log2>),
    so with the cifar stem res2..res5 give p0..p3 (+ p4 from the max-pool top block) and with
    tinyimagenet p1..p4 (+ p5): RPN / ROI_HEADS.IN_FEATURES and the anchor sizes follow."""
    bottom_up = build_resnet_backbone_with_stem_type(cfg, input_shape)
    top_block = LastLevelMaxPool()
    # It pools the last FPN level, which the stock one expects to be p5 (res5 at stride 32).
    last_stride = bottom_up.output_shape()[cfg.MODEL.FPN.IN_FEATURES[-1]].stride
    top_block.in_feature = f"p{int(math.log2(last_stride))}"
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """The C4 head of the MoCo / InfoMin detection results: res5 followed by one more norm layer,
    so the features entering the box predictor are normalised like the rest of a SyncBN network.

    Unlike stock Res5ROIHeads (always bottleneck blocks), res5 is built from BasicBlocks for
    ResNet-18/34, so their pretrained res5 weights load into the head instead of being skipped.
    """

    @classmethod
    def _build_res5_block(cls, cfg):
        depth = cfg.MODEL.RESNETS.DEPTH
        if depth in RES5_BLOCKS_BASIC:
            out_channels = cfg.MODEL.RESNETS.RES2_OUT_CHANNELS * 8
            blocks = ResNet.make_stage(
                BasicBlock,
                RES5_BLOCKS_BASIC[depth],
                stride_per_block=[2] + [1] * (RES5_BLOCKS_BASIC[depth] - 1),
                in_channels=out_channels // 2,
                out_channels=out_channels,
                norm=cfg.MODEL.RESNETS.NORM,
            )
            res5 = nn.Sequential(*blocks)
        else:
            res5, out_channels = super()._build_res5_block(cfg)
        res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
        return res5, out_channels
