"""Test helpers that stand independent of the code under test."""


def expected_detectron2_name(torchvision_key: str) -> str:
    """The reference converters' renaming, spelled out independently of detection/convert.py."""
    parts = torchvision_key.split(".")
    if parts[0] in ("conv1", "bn1"):
        return "stem.conv1" + (".norm." if parts[0] == "bn1" else ".") + parts[-1]
    stage = f"res{int(parts[0][-1]) + 1}"
    block, layer, rest = parts[1], parts[2], parts[3:]
    if layer == "downsample":
        layer = "shortcut" + (".norm" if rest[0] == "1" else "")
        rest = rest[1:]
    elif layer.startswith("bn"):
        layer = f"conv{layer[2:]}.norm"
    return ".".join([stage, block, layer, *rest])


def random_resnet(arch: str = "resnet18", seed: int = 0, **kwargs):
    """A real torchvision model with non-trivial BN statistics and affine parameters, so that a
    swapped buffer or another network's tensor would show."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)(**kwargs)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
    return net
