"""The keys of a fair short comparison of methods: each method's own small-batch lr rule
(SOLVER.LR_SCALING) and an EMA momentum with the same schedule in fractions of the run
(MODEL.MOMENTUM_REFERENCE_ITERS)."""

import math

import pytest
import torch

from pretrain.common.errors import ConfigError
from pretrain.config import load_cfg
from pretrain.pretraining import build_optimizer, model_cfg_for_run, scaled_lr
from pretrain.models.registry import build_model
from pretrain.models.ema import run_length_momentum
from tests.conftest import REPO

BYOL = str(REPO / "configs" / "pretrain" / "byol_R50_1000ep.yaml")
SIMCLR = str(REPO / "configs" / "pretrain" / "simclr_R50_100ep.yaml")


def test_simclrs_square_root_rule_gives_its_0075_sqrt_batch():
    """SimCLR App. B.1: lr = 0.075 x sqrt(BatchSize), BASE_LR 1.2 at 256 here; at batch 64 that
    is 8x the linear rule's lr from the 4096-batch recipe's 0.3 per 256."""
    cfg = load_cfg(
        SIMCLR, ["SOLVER.BATCH_SIZE", "64", "SOLVER.LR_SCALING", "sqrt", "SOLVER.BASE_LR", "1.2"]
    )
    assert scaled_lr(cfg) == pytest.approx(0.075 * math.sqrt(64))
    linear = load_cfg(SIMCLR, ["SOLVER.BATCH_SIZE", "64"])
    assert scaled_lr(linear) == pytest.approx(0.3 * 64 / 256)
    assert scaled_lr(cfg) / scaled_lr(linear) == pytest.approx(8.0)
    torch.manual_seed(0)
    model = build_model(
        load_cfg(
            SIMCLR,
            [
                "MODEL.ARCH",
                "resnet18",
                "SOLVER.BATCH_SIZE",
                "64",
                "SOLVER.LR_SCALING",
                "sqrt",
                "SOLVER.BASE_LR",
                "1.2",
            ],
        )
    )
    optimizer, _ = build_optimizer(cfg, model, iters_per_epoch=10, total_iters=100)
    assert all(group["initial_lr"] == pytest.approx(0.6) for group in optimizer.param_groups)
    with pytest.raises(ConfigError, match="SOLVER.LR_SCALING 'cubic'"):
        scaled_lr(load_cfg(SIMCLR, ["SOLVER.LR_SCALING", "cubic"]))


def test_the_ema_schedule_is_kept_in_fractions_of_the_run():
    """After a fraction f of the run the target has kept base^(f x reference) of itself, at the
    recipe's length and at any other."""
    reference, short = 312_785, 200
    scaled = run_length_momentum(0.996, reference, short)
    for f in (0.1, 0.5, 1.0):
        assert scaled ** (f * short) == pytest.approx(0.996 ** (f * reference))
    assert run_length_momentum(0.996, reference, reference) == pytest.approx(0.996)
    assert run_length_momentum(0.996, 0, short) == 0.996  # off


def test_the_model_is_built_with_the_run_length_momentum_and_the_config_keeps_its_own():
    cfg = load_cfg(BYOL, ["MODEL.ARCH", "resnet18", "MODEL.MOMENTUM_REFERENCE_ITERS", "1000"])
    built = model_cfg_for_run(cfg, total_iters=100)
    assert built.MODEL.MOMENTUM == pytest.approx(0.996**10)
    assert cfg.MODEL.MOMENTUM == 0.996  # what the run folder and checkpoint record
    torch.manual_seed(0)
    model = build_model(built)
    assert model.momentum_schedule.base == pytest.approx(0.996**10)
    assert model_cfg_for_run(load_cfg(BYOL), 100) is not None
    assert model_cfg_for_run(load_cfg(BYOL), 100).MODEL.MOMENTUM == 0.996  # the key off


def test_a_cosine_ends_at_the_floor_a_release_decays_to():
    """SOLVER.COSINE_FLOOR (SwAV's final_lr, DINO's min_lr, VISSL's PIRL end_value): the cosine
    goes from the peak to floor x peak; 0 leaves MoCo's cosine to the last bit."""
    from pretrain.engine.schedule import warmup_cosine

    floored, plain = warmup_cosine(2.0, 2, 12, floor=0.001), warmup_cosine(2.0, 2, 12)
    assert floored(1) == plain(1) == 2.0 and floored(12) == pytest.approx(0.002)
    assert floored(7) == pytest.approx(0.002 + (2.0 - 0.002) * 0.5)
    assert [warmup_cosine(2.0, 2, 12, floor=0.0)(i) for i in range(13)] == [
        plain(i) for i in range(13)
    ]
    with pytest.raises(ConfigError, match=r"SOLVER.COSINE_FLOOR 1.5: expected a fraction"):
        warmup_cosine(2.0, 2, 12, floor=1.5)
