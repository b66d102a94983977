"""The shipped CIFAR-10 recipes (configs/pretrain/cifar10/): MoCo's own CIFAR-10 demo value for
value, and each recipe stepping on real CIFAR-10 images at 32 px with the small-image stem."""

import json
import math

import pytest
import torch

from pretrain.config import load_cfg
from pretrain.pretraining import train
from tests.conftest import REPO

CIFAR = REPO / "configs" / "pretrain" / "cifar10"


def test_the_moco_demo_recipe_is_the_notebooks():
    """facebookresearch/moco colab/moco_cifar10_demo.ipynb, as ../shared/docs/facts.md lists it."""
    cfg = load_cfg(str(CIFAR / "moco_demo_R18.yaml"))
    model, solver, ev = cfg.MODEL, cfg.SOLVER, cfg.EVAL
    assert (model.ARCH, model.STEM, model.HEAD, model.FEAT_DIM) == (
        "resnet18",
        "cifar",
        "linear",
        128,
    )
    assert (model.QUEUE_SIZE, model.MOMENTUM, model.TEMPERATURE) == (4096, 0.99, 0.1)
    assert model.SHUFFLE_BN and model.BN_SPLITS == 8 and not model.BATCH_NEGATIVES
    assert solver.BATCH_SIZE == 512
    assert solver.BASE_LR * solver.BATCH_SIZE / 256 == pytest.approx(0.06)
    assert (solver.MOMENTUM, solver.WEIGHT_DECAY, solver.EPOCHS) == (0.9, 0.0005, 200)
    assert solver.WARMUP_EPOCHS == 0 and not solver.LR_STEPS  # cosine, no warm-up
    assert tuple(cfg.DATA.CROP_SCALE) == (0.08, 1.0) and cfg.DATA.CROP_SIZE == 32
    assert tuple(cfg.DATA.VIEWS.JITTER) == (0.4, 0.4, 0.4, 0.1)
    assert (cfg.DATA.VIEWS.JITTER_P, cfg.DATA.VIEWS.GRAYSCALE_P) == (0.8, 0.2)
    assert tuple(cfg.DATA.VIEWS.STEPS) == ("flip", "jitter", "grayscale")
    # The monitor: k 200, T 0.1 on the 128-d output, once per epoch of 50,000 // 512 batches.
    assert (ev.KNN_K, ev.KNN_TEMPERATURE, ev.KNN_FEATURES) == (200, 0.1, "embedding")
    assert ev.KNN_PERIOD == 50_000 // 512 and ev.CROP_FRACTION == 1.0


@pytest.mark.parametrize("name", ["moco_demo_R18", "mocov2_R18", "simclr_R18", "infomin_R18"])
def test_each_cifar_recipe_steps_on_cifar10_at_32px(name, cifar10, tmp_path):
    cfg = load_cfg(
        str(CIFAR / f"{name}.yaml"),
        [
            "DATA.ROOT",
            str(cifar10 / "test"),
            "OUTPUT_DIR",
            str(tmp_path / name),
            "SOLVER.BATCH_SIZE",
            "16",
            "SOLVER.MAX_ITER",
            "2",
            "DATA.NUM_WORKERS",
            "0",
            "DATA.CHECK",
            "off",
            "EVAL.KNN_PERIOD",
            "2",
            "EVAL.KNN_TRAIN_ROOT",
            str(cifar10 / "train"),
            "EVAL.KNN_TEST_ROOT",
            str(cifar10 / "test"),
            "EVAL.KNN_TRAIN_LIMIT",
            "200",
            "EVAL.KNN_TEST_LIMIT",
            "40",
            "EVAL.KNN_K",
            "20",
            "MODEL.BN_SPLITS",
            "2",
        ],
    )
    final = train(cfg)
    state = torch.load(final, map_location="cpu", weights_only=False)
    assert state["iteration"] == 2
    conv1 = next(v for k, v in state["model"].items() if k.endswith("backbone.conv1.weight"))
    assert conv1.shape[-2:] == (3, 3)  # the CIFAR stem's 3x3 conv
    rows = [
        json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
    ]
    knn = [row["knn_acc"] for row in rows if "knn_acc" in row]
    assert knn and all(0 <= acc <= 100 and math.isfinite(acc) for acc in knn)
