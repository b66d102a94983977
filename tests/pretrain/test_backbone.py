import pytest
import torch
import torchvision

from pretrain.models.backbone import UnknownStemError, build_backbone


@pytest.mark.parametrize(
    "arch, width, dim",
    [("resnet18", 1, 512), ("resnet34", 1, 512), ("resnet50", 1, 2048), ("resnet50", 2, 4096)],
)
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


def feature_maps(trunk: torch.nn.Module, size: int) -> tuple[tuple, tuple]:
    """Shapes of the stem's output (what layer1 receives) and of layer4's, for one image batch."""
    seen = {}
    trunk.layer1.register_forward_pre_hook(lambda m, args: seen.update(stem=args[0].shape))
    trunk.layer4.register_forward_hook(lambda m, args, out: seen.update(layer4=out.shape))
    trunk.eval()(torch.randn(2, 3, size, size))
    return tuple(seen["stem"]), tuple(seen["layer4"])


# (stem, image size) -> side of the stem's output and of layer4's: strides 4 / 32 for ImageNet's
# stem, 1 / 8 for CIFAR's, 2 / 16 for the 64-96 px one.
STEM_SIDES = {
    ("imagenet", 32): (8, 1),
    ("imagenet", 64): (16, 2),
    ("cifar", 32): (32, 4),
    ("cifar", 64): (64, 8),
    ("tinyimagenet", 32): (16, 2),
    ("tinyimagenet", 64): (32, 4),
}


@pytest.mark.parametrize("stem, size", sorted(STEM_SIDES))
@pytest.mark.parametrize("arch, width, channels", [("resnet18", 1, 512), ("resnet18", 2, 1024)])
def test_each_stems_feature_maps_at_32_and_64_px(stem, size, arch, width, channels):
    trunk, dim = build_backbone(arch, width, stem)
    stem_side, final_side = STEM_SIDES[stem, size]
    assert feature_maps(trunk, size) == (
        (2, 64 * width, stem_side, stem_side),
        (2, channels, final_side, final_side),
    )
    assert dim == channels and trunk(torch.randn(2, 3, size, size)).shape == (2, channels)


@pytest.mark.parametrize("stem, kernel", [("cifar", 3), ("tinyimagenet", 3), ("imagenet", 7)])
def test_every_stem_keeps_torchvisions_names(stem, kernel):
    reference = torchvision.models.resnet18().state_dict()
    state = build_backbone("resnet18", 1, stem)[0].state_dict()
    assert set(state) == set(reference) - {"fc.weight", "fc.bias"}
    assert state["conv1.weight"].shape == (64, 3, kernel, kernel)
    assert all(state[k].shape == reference[k].shape for k in state if k != "conv1.weight")


def test_default_stem_draws_exactly_the_network_it_drew_before_stems():
    """The ImageNet stem is torchvision's own: the same seed gives the same weights."""
    torch.manual_seed(3)
    reference = torchvision.models.resnet18().state_dict()
    torch.manual_seed(3)
    state = build_backbone("resnet18")[0].state_dict()
    assert all(torch.equal(state[k], reference[k]) for k in state)


def test_unknown_stem_is_a_clear_error():
    with pytest.raises(UnknownStemError, match="stem 'vit' is not one of"):
        build_backbone("resnet18", 1, "vit")
