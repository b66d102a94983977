"""Readouts that would report chance as a result are refused (pretrain/evaluation/
readout_checks.py); one without a checkpoint says it measures a random backbone."""

import numpy as np
import pytest
from PIL import Image

from pretrain.common.errors import ConfigError
from pretrain.evaluation.knn import knn_accuracy
from pretrain.evaluation.linear import load_lincls_cfg, run_linear_readout
from pretrain.models.backbone import build_backbone


@pytest.fixture
def tiny_folder(tmp_path):
    """Two classes of two real JPEGs each, ImageNet layout."""
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / cls / f"{i}.jpg")
    return tmp_path / "images"


def lincls_cfg(root, out, *opts):
    return load_lincls_cfg(
        "",
        [
            "MODEL.ARCH",
            "resnet18",
            "DATA.ROOT",
            str(root),
            "DATA.VAL_ROOT",
            str(root),
            "DATA.CROP_SIZE",
            "32",
            "DATA.NUM_WORKERS",
            "0",
            "SOLVER.EPOCHS",
            "1",
            "OUTPUT_DIR",
            str(out),
            *opts,
        ],
    )


def test_lincls_with_fewer_images_than_a_batch_is_refused(tiny_folder, tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"DATA.ROOT \S+images has 4 images, fewer than one "
        r"batch \(SOLVER.BATCH_SIZE 8\): the readout would "
        "train 0 steps",
    ):
        run_linear_readout(lincls_cfg(tiny_folder, tmp_path / "out", "SOLVER.BATCH_SIZE", "8"))
    with pytest.raises(ConfigError, match="SOLVER.EPOCHS 0: the readout would train 0 steps"):
        run_linear_readout(lincls_cfg(tiny_folder, tmp_path / "out", "SOLVER.EPOCHS", "0"))


def test_lincls_without_a_checkpoint_says_so(tiny_folder, tmp_path, capsys):
    acc = run_linear_readout(lincls_cfg(tiny_folder, tmp_path / "out", "SOLVER.BATCH_SIZE", "2"))
    assert 0 <= acc <= 100
    assert (
        "warning: no MODEL.WEIGHTS: reading out a randomly initialised backbone"
        in capsys.readouterr().err
    )


def test_knn_without_neighbours_is_refused(tiny_folder):
    backbone, _ = build_backbone("resnet18")
    with pytest.raises(ConfigError, match="k 0: a kNN readout needs at least one neighbour"):
        knn_accuracy(backbone, str(tiny_folder), str(tiny_folder), 32, "cpu", k=0, num_workers=0)
