"""Detectron2 backbones with pretraining's stems (detection/modeling.py): the same network as the
pretrained trunk, tensor for tensor and output for output, and configs that cannot mix stems."""

import pickle

import pytest
import torch

from detection.verify import build_cfg, verify_weights
from pretrain.common.errors import ConfigError
from pretrain.models.backbone import STEMS, build_backbone
from tests.conftest import run_tool
from tests.helpers import expected_detectron2_name

CIFAR_FPN = "configs/detection/small/fruits_nuts_R_18_FPN_cifar_stem.yaml"
TINY_FPN = "configs/detection/small/synthetic_R_18_FPN_tinyimagenet_stem.yaml"
STOCK_FPN = "configs/detection/small/fruits_nuts_R_18_FPN.yaml"
R18_C4 = "configs/detection/small/bccd_R_18_C4.yaml"


def trained_looking_trunk(stem: str) -> torch.nn.Module:
    """A pretraining trunk with non-trivial BN statistics, so a swapped buffer would show."""
    torch.manual_seed(0)
    trunk, _ = build_backbone("resnet18", 1, stem)
    with torch.no_grad():
        for m in trunk.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return trunk.eval()


def detectron2_resnet(stem: str):
    """The Detectron2 ResNet-18 of the stem-aware builder, plain BN, every stage an output."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import BACKBONE_REGISTRY

    cfg = build_cfg(CIFAR_FPN, ["MODEL.RESNETS.STEM_TYPE", stem, "MODEL.RESNETS.NORM", "BN"])
    return BACKBONE_REGISTRY.get("build_resnet_backbone_with_stem_type")(cfg, ShapeSpec(channels=3))


@pytest.mark.parametrize("stem", sorted(STEMS))
def test_detectron2_backbone_computes_what_pretraining_trained(stem):
    trunk = trained_looking_trunk(stem)
    resnet = detectron2_resnet(stem).eval()
    weights = {
        expected_detectron2_name(k): v
        for k, v in trunk.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    missing, unexpected = resnet.load_state_dict(weights, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)

    first = STEMS[stem].total_stride
    assert {k: v.stride for k, v in resnet.output_shape().items()} == {
        "res2": first,
        "res3": 2 * first,
        "res4": 4 * first,
        "res5": 8 * first,
    }
    ours = {}
    for i, layer in enumerate((trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4)):
        layer.register_forward_hook(lambda m, a, out, i=i: ours.update({f"res{i + 2}": out}))
    for size in (32, 64):
        images = torch.randn(2, 3, size, size)
        with torch.no_grad():
            trunk(images)
            theirs = resnet(images)
        for name in ("res2", "res3", "res4", "res5"):
            side = size // (first * 2 ** (int(name[-1]) - 2))
            assert theirs[name].shape[-2:] == (max(side, 1), max(side, 1)), (name, size)
            torch.testing.assert_close(theirs[name], ours[name], rtol=1e-4, atol=1e-4)


def test_fpn_levels_are_named_by_their_stride_and_the_top_block_pools_the_last():
    from detectron2.modeling import build_model

    for config, levels in (
        (CIFAR_FPN, ["p0", "p1", "p2", "p3", "p4"]),
        (TINY_FPN, ["p1", "p2", "p3", "p4", "p5"]),
    ):
        model = build_model(build_cfg(config)).eval()
        with torch.no_grad():
            features = model.backbone(torch.randn(1, 3, 64, 64))
        assert list(features) == levels
        first = int(levels[0][1:])
        assert [f.shape[-1] for f in features.values()] == [64 >> (first + i) for i in range(5)]


@pytest.mark.integration
def test_c4_model_with_the_cifar_stem_loads_a_converted_trunk(tmp_path):
    """res5 lives in the ROI head of a C4 model; a 3x3 conv1 records no stem, so any small-stem
    config may take it."""
    trunk = trained_looking_trunk("cifar")
    torch.save(trunk.state_dict(), tmp_path / "cifar.pth")
    run_tool("tools/convert.py", str(tmp_path / "cifar.pth"), str(tmp_path / "cifar.pkl"))
    assert "stem" not in pickle.load(open(tmp_path / "cifar.pkl", "rb"))
    opts = [
        "MODEL.BACKBONE.NAME",
        "build_resnet_backbone_with_stem_type",
        "MODEL.RESNETS.STEM_TYPE",
        "cifar",
    ]
    assert verify_weights(str(tmp_path / "cifar.pkl"), R18_C4, opts) == 100


def test_a_small_stem_with_a_stock_backbone_or_an_unknown_stem_is_a_config_error():
    from detection.config import load_detection_cfg

    with pytest.raises(
        ConfigError,
        match="STEM_TYPE 'cifar' needs MODEL.BACKBONE.NAME one of "
        r"\['build_resnet_backbone_with_stem_type'",
    ):
        load_detection_cfg(STOCK_FPN, ["MODEL.RESNETS.STEM_TYPE", "cifar"])
    with pytest.raises(ConfigError, match=f"{CIFAR_FPN}: MODEL.RESNETS.STEM_TYPE 'stl' is not one"):
        load_detection_cfg(CIFAR_FPN, ["MODEL.RESNETS.STEM_TYPE", "stl"])


def test_imagenet_stem_type_is_the_stock_backbone():
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone.resnet import BasicStem, build_resnet_backbone

    cfg = build_cfg(STOCK_FPN, ["MODEL.RESNETS.NORM", "BN"])
    torch.manual_seed(0)
    stock = build_resnet_backbone(cfg, ShapeSpec(channels=3)).state_dict()
    torch.manual_seed(0)
    ours = detectron2_resnet("imagenet")
    assert isinstance(ours.stem, BasicStem)
    assert all(torch.equal(v, stock[k]) for k, v in ours.state_dict().items())
