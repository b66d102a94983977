"""Settings that would train and report plausible numbers, refused before training
(detection/settings_checks.py): a class count other than the dataset's, and backbone weights of
another depth or width."""

import pickle

import pytest
import torch
import torchvision

from detection.convert import arch_of_weights, convert, to_detectron2
from pretrain.common.errors import CheckpointError, ConfigError
from tests.conftest import REPO

BCCD = str(REPO / "configs/detection/small/bccd_R_18_C4.yaml")
R50_OPTS = ["MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.RES2_OUT_CHANNELS", "256"]


def setup_args(*opts):
    from detection.train_net import parse_args

    return parse_args(["--config-file", BCCD, *opts])


def test_num_classes_below_the_datasets_is_refused(shared_data, tmp_path):
    from detection import train_net

    args = setup_args("MODEL.ROI_HEADS.NUM_CLASSES", "2", "OUTPUT_DIR", str(tmp_path / "run"))
    with pytest.raises(
        ConfigError,
        match=r"MODEL.ROI_HEADS.NUM_CLASSES 2, but dataset bccd_train "
        r"has 3 classes \(RBC, WBC, Platelets\)",
    ):
        train_net.setup(args)
    assert not (tmp_path / "run").exists()  # refused before the output folder was touched
    args = setup_args(
        "MODEL.ROI_HEADS.NUM_CLASSES",
        "2",
        "DATASETS.ALLOW_NUM_CLASSES_MISMATCH",
        "True",
        "OUTPUT_DIR",
        str(tmp_path / "run"),
    )
    assert train_net.setup(args).MODEL.ROI_HEADS.NUM_CLASSES == 2


@pytest.fixture(scope="module")
def r18_pkl(tmp_path_factory):
    """ResNet-18 weights as tools/convert.py writes them (from a real torchvision model)."""
    folder = tmp_path_factory.mktemp("r18")
    torch.save(torchvision.models.resnet18().state_dict(), folder / "r18.pth")
    convert(str(folder / "r18.pth"), str(folder / "r18.pkl"))
    return folder / "r18.pkl"


def test_convert_records_the_architecture(r18_pkl):
    with open(r18_pkl, "rb") as f:
        data = pickle.load(f)
    assert (data["arch"], data["width"], data["stem"]) == ("resnet18", 1.0, "imagenet")


@pytest.mark.parametrize(
    "arch, expected",
    [
        ("resnet34", ("resnet34", 1.0)),
        ("resnet50", ("resnet50", 1.0)),
        ("resnext50_32x4d", ("resnext50_32x4d", 1.0)),
    ],
)
def test_architecture_from_the_weights_alone(arch, expected):
    net = getattr(torchvision.models, arch)()
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    assert arch_of_weights(to_detectron2(state)) == expected


def test_resnet18_weights_in_a_resnet50_model_are_refused(r18_pkl):
    from detection.train_net import Trainer
    from detection.verify import build_cfg

    cfg = build_cfg(BCCD, ["MODEL.WEIGHTS", str(r18_pkl), *R50_OPTS], keep_weights=True)
    with pytest.raises(
        CheckpointError,
        match=r"holds a ResNet-18 backbone \(width 1\), the model "
        r"builds ResNet-50 \(width 1; MODEL.RESNETS.DEPTH 50"
        r".*: \d+ of \d+ backbone tensors would stay random",
    ):
        Trainer.build_model(cfg)
    # Allowed when asked for, and weights of the right depth pass as they are.
    cfg = build_cfg(
        BCCD,
        ["MODEL.WEIGHTS", str(r18_pkl), *R50_OPTS, "MODEL.BACKBONE.MAX_RANDOM_FRACTION", "1.0"],
        keep_weights=True,
    )
    Trainer.build_model(cfg)
    Trainer.build_model(build_cfg(BCCD, ["MODEL.WEIGHTS", str(r18_pkl)], keep_weights=True))


def test_torchvision_names_that_detectron2_cannot_place_are_refused(tmp_path):
    """A torchvision state dict given straight to Detectron2 loads nothing into the backbone."""
    from detection.train_net import Trainer
    from detection.verify import build_cfg

    torch.save({"model": torchvision.models.resnet18().state_dict()}, tmp_path / "tv.pth")
    cfg = build_cfg(BCCD, ["MODEL.WEIGHTS", str(tmp_path / "tv.pth")], keep_weights=True)
    with pytest.raises(
        CheckpointError,
        match=r"holds a ResNet backbone of unknown depth.*"
        r"(\d+) of \1 backbone tensors would stay random",
    ):
        Trainer.build_model(cfg)


def test_a_dataset_without_categories_says_so_not_set_num_classes_0():
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from detection.config import load_detection_cfg
    from detection.settings_checks import check_num_classes

    DatasetCatalog.register("no_categories_test", lambda: [])
    MetadataCatalog.get("no_categories_test").set(thing_classes=[])
    cfg = load_detection_cfg(
        str(REPO / "configs/detection/small/bccd_R_18_C4.yaml"),
        ["DATASETS.TRAIN", "('no_categories_test',)", "DATASETS.TEST", "()"],
    )
    with pytest.raises(ConfigError, match="dataset no_categories_test has no categories") as err:
        check_num_classes(cfg)
    assert "NUM_CLASSES 0" not in str(err.value)


def test_eval_only_with_a_head_of_another_class_count_is_refused(tmp_path):
    """A 1-class checkpoint under NUM_CLASSES 2 would be scored with a random head."""
    from detectron2.modeling import build_model

    from detection.config import load_detection_cfg
    from detection.settings_checks import check_eval_weights

    bccd = str(REPO / "configs/detection/small/bccd_R_18_C4.yaml")
    one_class = load_detection_cfg(
        bccd, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.ROI_HEADS.NUM_CLASSES", "1"]
    )
    path = tmp_path / "model_final.pth"
    torch.save({"model": build_model(one_class).state_dict(), "iteration": 3}, path)
    same = load_detection_cfg(
        bccd,
        ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(path), "MODEL.ROI_HEADS.NUM_CLASSES", "1"],
    )
    check_eval_weights(same, build_model(same))  # the model it was trained as: fine
    two = load_detection_cfg(
        bccd,
        ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", str(path), "MODEL.ROI_HEADS.NUM_CLASSES", "2"],
    )
    with pytest.raises(
        CheckpointError,
        match=r"--eval-only: .* does not fill 4 of .*"
        r"roi_heads.box_predictor.*ROI_HEADS.NUM_CLASSES 2",
    ):
        check_eval_weights(two, build_model(two))
