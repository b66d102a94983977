import pytest

from detection.config import apply_batch_scale
from detection.verify import build_cfg
from pretrain.common.errors import ConfigError, DatasetError
from tests.conftest import REPO

COCO = str(REPO / "configs/detection/coco_R_50_FPN_1x_infomin.yaml")


def test_batch_scale_keeps_the_epochs_of_the_recipe():
    cfg = build_cfg(COCO, ["SOLVER.BATCH_SCALE", "0.5"])
    apply_batch_scale(cfg)
    s = cfg.SOLVER
    assert (s.IMS_PER_BATCH, s.BASE_LR, s.MAX_ITER, s.STEPS) == (8, 0.01, 180000, (120000, 160000))
    assert s.WARMUP_ITERS == 2000 and s.BATCH_SCALE == 1.0
    assert s.IMS_PER_BATCH * s.MAX_ITER == 16 * 90000


def test_batch_scale_that_splits_an_image_is_refused():
    cfg = build_cfg(COCO, ["SOLVER.BATCH_SCALE", "0.3"])
    with pytest.raises(ConfigError, match="BATCH_SCALE 0.3"):
        apply_batch_scale(cfg)


def test_missing_builtin_dataset_files_stop_before_training(tmp_path):
    from detectron2.engine import default_argument_parser

    from detection import train_net

    args = default_argument_parser().parse_args(
        ["--config-file", COCO, "OUTPUT_DIR", str(tmp_path)]
    )
    with pytest.raises(
        DatasetError, match=r"coco_2017_train: json_file .*instances_train2017.json"
    ):
        train_net.setup(args)


def test_unknown_override_key_names_the_command_line_not_the_file(tmp_path):
    from detectron2.engine import default_argument_parser

    from detection import train_net

    args = default_argument_parser().parse_args(["--config-file", COCO, "SOLVER.NO_SUCH_KEY", "1"])
    with pytest.raises(ConfigError, match="command-line override: .*NO_SUCH_KEY"):
        train_net.setup(args)
