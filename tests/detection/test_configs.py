"""Every shipped detection config merges with Detectron2's get_cfg, builds, and has SyncBN where the
recipe puts it and the input convention of torchvision-style weights."""

from pathlib import Path

import pytest
import torch

from detection.verify import build_cfg
from tests.conftest import REPO

CONFIG_DIR = REPO / "configs" / "detection"
PUBLISHED = sorted(p for p in CONFIG_DIR.glob("*.yaml") if not p.name.startswith("Base-"))
BASE_MODELS = [p for p in PUBLISHED if not p.stem.endswith(("_infomin", "_rand"))]
TORCHVISION_MEAN, TORCHVISION_STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def test_the_published_set_is_complete():
    names = {p.stem for p in PUBLISHED}
    for base in [
        "coco_R_50_FPN_1x",
        "coco_R_50_FPN_2x",
        "coco_R_50_FPN_6x",
        "coco_R_50_C4_1x",
        "coco_R_50_C4_2x",
        "coco_R_101_FPN_1x",
        "coco_R_101_FPN_2x",
        "coco_R_101_C4_1x",
        "coco_cascade_R_101_FPN_1x",
        "coco_X_101_32x8d_FPN_1x",
        "coco_X_152_32x8d_FPN_1x",
    ]:
        assert {base, base + "_infomin", base + "_rand"} <= names, base
    assert {"voc_R_50_C4_24k", "voc_R_50_C4_24k_infomin"} <= names


@pytest.mark.parametrize("config", PUBLISHED, ids=lambda p: p.stem)
def test_config_reads_rgb_with_torchvision_statistics(config: Path):
    cfg = build_cfg(str(config), keep_weights=True)
    assert cfg.INPUT.FORMAT == "RGB"
    assert list(cfg.MODEL.PIXEL_MEAN) == TORCHVISION_MEAN
    assert list(cfg.MODEL.PIXEL_STD) == TORCHVISION_STD
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False and cfg.MODEL.BACKBONE.FREEZE_AT == 0
    assert cfg.TEST.PRECISE_BN.ENABLED
    if config.stem.endswith("_infomin"):
        assert "infomin" in cfg.MODEL.WEIGHTS
    if config.stem.endswith("_rand"):
        assert cfg.MODEL.WEIGHTS == ""


def norm_layers(module: torch.nn.Module):
    from detectron2.layers import FrozenBatchNorm2d

    kinds = (torch.nn.BatchNorm2d, torch.nn.SyncBatchNorm, FrozenBatchNorm2d, torch.nn.GroupNorm)
    return [(name, m) for name, m in module.named_modules() if isinstance(m, kinds)]


@pytest.mark.parametrize("config", BASE_MODELS, ids=lambda p: p.stem)
def test_every_norm_is_syncbn(config: Path):
    from detectron2.modeling import build_model

    cfg = build_cfg(str(config))
    model = build_model(cfg)
    parts = {"backbone": model.backbone, "roi_heads": model.roi_heads}
    found = 0
    for part, module in parts.items():
        for name, layer in norm_layers(module):
            assert type(layer) is torch.nn.SyncBatchNorm, f"{part}.{name} is {type(layer).__name__}"
            found += 1
    if "FPN" in config.stem:  # SyncBN in FPN, the 4conv1fc box head(s) and the mask head too
        assert norm_layers(model.backbone.fpn_lateral2) and norm_layers(model.backbone.fpn_output2)
        box_heads = model.roi_heads.box_head  # one per stage in Cascade R-CNN
        stages = len(box_heads) if isinstance(box_heads, torch.nn.ModuleList) else 1
        assert len(norm_layers(box_heads)) == 4 * stages
    else:  # C4: res5 in the head, plus the extra norm after it
        assert type(model.roi_heads.res5.norm) is torch.nn.SyncBatchNorm
    if cfg.MODEL.MASK_ON and "FPN" in config.stem:
        assert len(norm_layers(model.roi_heads.mask_head)) == 4
    assert found > 50
