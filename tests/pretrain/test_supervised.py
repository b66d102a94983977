"""The supervised-pretraining baseline (pretrain/supervised.py, tools/supervised.py): schedule,
data order, training that learns, resuming, and export to Detectron2."""

import json
import math

import pytest

from pretrain.common.errors import ConfigError
from pretrain.config import load_supervised_cfg
from pretrain.engine.sampler import epoch_order
from pretrain.engine.schedule import warmup_cosine
from tests.conftest import run_tool


def test_learning_rate_warms_up_linearly_then_decays_to_zero_on_a_cosine():
    cfg = load_supervised_cfg(
        opts=["SOLVER.MAX_ITER", "100", "SOLVER.BATCH_SIZE", "64", "SOLVER.BASE_LR", "0.4"]
    )
    peak = 0.4 * 64 / 256
    lr = warmup_cosine(
        peak, int(cfg.SOLVER.WARMUP_FRACTION * cfg.SOLVER.MAX_ITER), cfg.SOLVER.MAX_ITER
    )
    assert lr(0) == pytest.approx(peak / 10)
    assert lr(9) == pytest.approx(peak)
    assert lr(10) == pytest.approx(peak)
    assert lr(55) == pytest.approx(peak * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr(99) < 0.001 * peak
    # To the last bit what the supervised loop computed before it used the shared schedule.
    for it in range(100):
        if it < 10:
            assert lr(it) == peak * (it + 1) / 10
        else:
            progress = (it - 10) / 90
            assert lr(it) == peak * 0.5 * (1 + math.cos(math.pi * progress))


def test_each_epoch_has_its_own_order_and_a_resumed_run_gets_the_same_one():
    first, second = epoch_order(50, seed=0, epoch=0), epoch_order(50, seed=0, epoch=1)
    assert sorted(first) == list(range(50)) and first != second
    assert epoch_order(50, seed=0, epoch=1) == second


def test_a_bad_schedule_is_a_clear_error():
    with pytest.raises(ConfigError, match="SOLVER.MAX_ITER 0: need at least one iteration"):
        load_supervised_cfg(opts=["SOLVER.MAX_ITER", "0"])


@pytest.mark.integration
def test_supervised_training_learns_resumes_and_exports_to_detectron2(cifar10, tmp_path):
    out = tmp_path / "run"
    common = [
        "tools/supervised.py",
        "MODEL.ARCH",
        "resnet18",
        "DATA.ROOT",
        str(cifar10 / "test"),
        "DATA.VAL_ROOT",
        str(cifar10 / "test"),
        "DATA.LIMIT",
        "64",
        "DATA.VAL_LIMIT",
        "64",
        "DATA.CROP_SIZE",
        "32",
        "DATA.CROP_SCALE",
        "(1.0, 1.0)",
        "SOLVER.BATCH_SIZE",
        "32",
        "SOLVER.BASE_LR",
        "0.4",
        "DATA.NUM_WORKERS",
        "0",
        "LOG_PERIOD",
        "10",
        "SOLVER.CHECKPOINT_PERIOD",
        "10",
        "OUTPUT_DIR",
        str(out),
    ]
    run_tool(*common, "SOLVER.MAX_ITER", "20")
    resumed = run_tool(common[0], "--resume", *common[1:], "SOLVER.MAX_ITER", "40").stdout
    assert "at iteration 20" in resumed
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = {r["iteration"]: r["loss"] for r in records if "loss" in r}
    assert sorted(losses) == [10, 20, 30, 40]  # the second run continued, not restarted
    # 64 images seen 20 times each: the classifier fits them (validation = the same images).
    assert losses[40] < 0.5 * losses[10]
    assert records[-1]["val_top1"] > 50.0
    converted = run_tool(
        "tools/convert.py",
        str(out / "model_final.pth"),
        str(tmp_path / "d2.pkl"),
        "--verify",
        "configs/detection/small/synthetic_R_18_FPN.yaml",
    ).stdout
    assert "as torchvision" in converted and "dropped 22 keys: fc.bias, fc.weight" in converted
    assert "verified:" in converted
