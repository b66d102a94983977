"""Readouts rebuild the stem (and, unless named, the architecture) a checkpoint was trained with:
from the config a pretraining checkpoint stores, from a 7x7 conv1, or as named; and refuse what
would load wrong weights silently."""

import pytest
import torch
import yaml

from pretrain.config import get_cfg
from pretrain.pretraining import CHECKPOINT_FORMAT
from pretrain.evaluation.backbone_loading import BackboneLoadError, load_backbone
from pretrain.models.backbone import build_backbone
from pretrain.models.moco import build_moco


def pretraining_checkpoint(path, stem: str, record_stem: bool = True) -> dict:
    """A checkpoint as the trainer writes it (format, stored config, real MoCo weights); without
    `record_stem`, its config is one written before MODEL.STEM existed."""
    cfg = get_cfg()
    cfg.merge_from_list(
        [
            "MODEL.ARCH",
            "resnet18",
            "MODEL.STEM",
            stem,
            "MODEL.QUEUE_SIZE",
            "16",
            "MODEL.HEAD_HIDDEN_DIM",
            "32",
            "SOLVER.BATCH_SIZE",
            "8",
        ]
    )
    model = build_moco(cfg)
    stored = yaml.safe_load(cfg.dump())
    if not record_stem:
        del stored["MODEL"]["STEM"]
    torch.save(
        {"format": CHECKPOINT_FORMAT, "cfg": yaml.safe_dump(stored), "model": model.state_dict()},
        path,
    )
    prefix = "query_encoder.backbone."
    return {k[len(prefix) :]: v for k, v in model.state_dict().items() if k.startswith(prefix)}


def assert_loaded(trunk, source: dict) -> None:
    state = trunk.state_dict()
    assert all(torch.equal(state[k], v) for k, v in source.items())


@pytest.mark.parametrize(
    "stem, pools", [("cifar", False), ("tinyimagenet", True), ("imagenet", True)]
)
def test_pretraining_checkpoint_rebuilds_its_own_stem(tmp_path, stem, pools):
    source = pretraining_checkpoint(tmp_path / "model.pth", stem)
    trunk, dim, found, *_ = load_backbone("resnet18", str(tmp_path / "model.pth"))
    assert found == stem and dim == 512 and isinstance(trunk.maxpool, torch.nn.MaxPool2d) == pools
    assert_loaded(trunk, source)


@pytest.mark.parametrize(
    "stem, asked", [("cifar", "tinyimagenet"), ("tinyimagenet", "cifar"), ("imagenet", "cifar")]
)
def test_a_stem_other_than_the_recorded_one_is_refused(tmp_path, stem, asked):
    pretraining_checkpoint(tmp_path / "model.pth", stem)
    with pytest.raises(BackboneLoadError, match=f"trained with stem '{stem}', not '{asked}'"):
        load_backbone("resnet18", str(tmp_path / "model.pth"), stem=asked)


def test_checkpoint_from_before_stems_is_imagenet(tmp_path):
    source = pretraining_checkpoint(tmp_path / "old.pth", "imagenet", record_stem=False)
    trunk, _, stem, *_ = load_backbone("resnet18", str(tmp_path / "old.pth"))
    assert stem == "imagenet" and trunk.conv1.kernel_size == (7, 7)
    assert_loaded(trunk, source)


def test_torchvision_weights_a_7x7_conv1_is_imagenet_a_3x3_one_must_be_named(tmp_path):
    imagenet = build_backbone("resnet18")[0].state_dict()
    torch.save(imagenet, tmp_path / "imagenet.pth")
    assert_loaded(load_backbone("resnet18", str(tmp_path / "imagenet.pth"))[0], imagenet)

    cifar = build_backbone("resnet18", 1, "cifar")[0].state_dict()
    torch.save(cifar, tmp_path / "cifar.pth")
    with pytest.raises(
        BackboneLoadError,
        match=r"\(64, 3, 3, 3\) conv1 records no stem: name "
        r"the one it was trained with \(cifar, tinyimagenet\)",
    ):
        load_backbone("resnet18", str(tmp_path / "cifar.pth"))
    trunk = load_backbone("resnet18", str(tmp_path / "cifar.pth"), stem="cifar").trunk
    assert isinstance(trunk.maxpool, torch.nn.Identity)
    assert_loaded(trunk, cifar)


def test_another_depth_or_width_is_a_one_line_error(tmp_path):
    torch.save(build_backbone("resnet34")[0].state_dict(), tmp_path / "r34.pth")
    with pytest.raises(BackboneLoadError, match="does not fit MODEL.ARCH resnet18: missing"):
        load_backbone("resnet18", str(tmp_path / "r34.pth"))
    torch.save(build_backbone("resnet18", 2)[0].state_dict(), tmp_path / "r18x2.pth")
    with pytest.raises(
        BackboneLoadError,
        match=r"does not fit MODEL.ARCH resnet18 \(WIDTH 1\): "
        "size mismatch for conv1.weight",
    ):
        load_backbone("resnet18", str(tmp_path / "r18x2.pth"))


def test_an_unnamed_arch_is_the_checkpoints_own_or_resnet50_for_a_random_backbone(tmp_path):
    source = pretraining_checkpoint(tmp_path / "model.pth", "tinyimagenet")
    loaded = load_backbone("", str(tmp_path / "model.pth"))
    assert (loaded.arch, loaded.stem, loaded.dim) == ("resnet18", "tinyimagenet", 512)
    assert_loaded(loaded.trunk, source)
    assert load_backbone("").arch == "resnet50" and load_backbone("").dim == 2048
    torch.save(build_backbone("resnet18")[0].state_dict(), tmp_path / "torchvision_r18.pth")
    with pytest.raises(BackboneLoadError, match="does not fit MODEL.ARCH resnet50"):
        load_backbone("", str(tmp_path / "torchvision_r18.pth"))  # records no arch: name it
