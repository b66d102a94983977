"""The recipes of the seeds' systems (AMDIM, and the ER variants configs/pretrain/*_er_*.yaml)
train 2 iterations on a few real images through tools/pretrain.py, as a user would start them,
and the result converts, verified, into a Detectron2 config. The progress line shows I_ER and,
for these methods, no I_NCE."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_tool

pytestmark = pytest.mark.integration

TINY = [
    "MODEL.ARCH",
    "resnet18",
    "MODEL.HEAD_HIDDEN_DIM",
    "32",
    "MODEL.FEAT_DIM",
    "16",
    "MODEL.PREDICTOR_HIDDEN_DIM",
    "16",
    "MODEL.DINO.OUT_DIM",
    "32",
    "MODEL.SWAV.NUM_PROTOTYPES",
    "8",
    "MODEL.SWAV.QUEUE_LENGTH",
    "0",
    "MODEL.SYNC_BN",
    "False",
    "DATA.CROP_SIZE",
    "64",
    "DATA.MULTI_CROP.SMALL_SIZE",
    "32",
    "DATA.NUM_WORKERS",
    "0",
    "SOLVER.BATCH_SIZE",
    "8",
    "SOLVER.MAX_ITER",
    "2",
    "SOLVER.WARMUP_EPOCHS",
    "0.0",
    "LOG_PERIOD",
    "1",
]
STOCK_FPN = "configs/detection/small/fruits_nuts_R_18_FPN.yaml"


# DINO-ER's and SwAV-ER's runs in the slow tier (their losses are checked in the default suite by
# the contract test and the float64 reference tests).
@pytest.mark.parametrize(
    "recipe",
    [
        "byol_er_R50_1000ep",
        pytest.param("dino_er_R50_100ep", marks=pytest.mark.slow),
        pytest.param("swav_er_R50_800ep", marks=pytest.mark.slow),
        "amdim_R50_IN128_50ep",
    ],
)
def test_a_recipe_trains_through_the_tool_and_converts(recipe, shared_data, tmp_path):
    out = tmp_path / "out"
    log = run_tool(
        "tools/pretrain.py",
        "--config-file",
        f"configs/pretrain/{recipe}.yaml",
        *TINY,
        "DATA.ROOT",
        str(shared_data / "bccd" / "JPEGImages"),
        "OUTPUT_DIR",
        str(out),
    ).stdout
    lines = [line for line in log.splitlines() if line.startswith("iter ")]
    assert len(lines) == 2 and all("I_ER" in line and "I_NCE" not in line for line in lines)
    with open(out / "metrics.jsonl") as f:
        logged = [r for r in map(json.loads, f) if "loss" in r]
    assert [r["iteration"] for r in logged] == [1, 2]
    if "_er_" in recipe:  # the loss is the reconstruction term minus the entropy term
        assert all(
            r["loss"] == pytest.approx(r[f"loss/{term}"] - r["loss/entropy"], rel=1e-4)
            for r in logged
            for term in ("reconstruction", "cross_entropy", "swapped_prediction")
            if f"loss/{term}" in r
        )
    else:  # AMDIM: its three predictions and the score regulariser
        assert all(
            r["loss"]
            == pytest.approx(sum(v for k, v in r.items() if k.startswith("loss/")), rel=1e-4)
            for r in logged
        )
    run_tool(
        "tools/convert.py",
        str(out / "model_final.pth"),
        str(tmp_path / "d2.pkl"),
        "--verify",
        STOCK_FPN,
    )
