import pytest
import torch

from pretrain.models.backbone import build_backbone


@pytest.mark.parametrize("arch, width, dim", [("resnet18", 1, 512), ("resnet34", 1, 512),
                                              ("resnet50", 1, 2048), ("resnet50", 2, 4096)])
def test_trunk_features(arch, width, dim):
    trunk, feature_dim = build_backbone(arch, width)
    assert feature_dim == dim
    assert trunk(torch.randn(2, 3, 64, 64)).shape == (2, dim)


def test_wide_resnet_widens_every_stage_and_keeps_torchvision_names():
    trunk, _ = build_backbone("resnet50", 2)
    state = trunk.state_dict()
    assert state["conv1.weight"].shape == (128, 3, 7, 7)
    assert state["layer1.0.conv1.weight"].shape == (128, 128, 1, 1)
    assert state["layer1.0.downsample.0.weight"].shape == (512, 128, 1, 1)
    assert state["layer4.2.conv3.weight"].shape == (4096, 1024, 1, 1)


def test_resnext152_layout():
    trunk, dim = build_backbone("resnext152_32x8d")
    assert dim == 2048 and len(trunk.layer3) == 36
    assert trunk.layer1[0].conv2.groups == 32 and trunk.layer1[0].conv2.in_channels == 256


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="not a ResNet"):
        build_backbone("vit_b_16")
