"""Model pieces the published transfer recipes need and stock Detectron2 lacks. Importing this
module registers them."""
from __future__ import annotations

import torch.nn as nn
from detectron2.layers import get_norm
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.backbone.resnet import BasicBlock, ResNet
from detectron2.modeling.roi_heads import Res5ROIHeads

RES5_BLOCKS_BASIC = {18: 2, 34: 3}


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
                BasicBlock, RES5_BLOCKS_BASIC[depth],
                stride_per_block=[2] + [1] * (RES5_BLOCKS_BASIC[depth] - 1),
                in_channels=out_channels // 2, out_channels=out_channels,
                norm=cfg.MODEL.RESNETS.NORM)
            res5 = nn.Sequential(*blocks)
        else:
            res5, out_channels = super()._build_res5_block(cfg)
        res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
        return res5, out_channels
