"""MODEL.METHOD swav / dino end to end, with multi-crop: each shipped ResNet-50 recipe, shrunk to a
CPU test, trains three iterations through the library path of tools/pretrain.py on real images
(two large and two small crops each), writes checkpoints that tools/convert.py's converter reads
the backbone out of, and a run resumed from the second checkpoint ends exactly where the whole
run did (the prototypes' / last layer's freeze ends inside the run, so the resume crosses it);
and on 2 gloo processes they take the steps of 1 process on the same global batch, which needs
Sinkhorn's sums and DINO's centre over the global batch (float64, as
tests/pretrain/test_methods_distributed.py explains), with and without SwAV's queue."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from detection.convert import convert
from pretrain.config import load_cfg
from tests.conftest import REPO
from tests.pretrain.test_methods import (
    TINY,
    assert_resumes_exactly,
    metrics,
    train_three_iterations,
)
from tests.pretrain.test_methods_distributed import (
    assert_two_processes_step_like_one,
    steps_on_crops,
)

CONFIGS = {"swav": "swav_R50_800ep.yaml", "dino": "dino_R50_100ep.yaml"}
# BCCD's 364 images make 45 batches of 8: 0.03 epochs freezes the first iteration only.
SMALL = [
    "DATA.MULTI_CROP.NUM_SMALL",
    "2",
    "DATA.MULTI_CROP.SMALL_SIZE",
    "16",
    "MODEL.SWAV.NUM_PROTOTYPES",
    "16",
    "MODEL.SWAV.FREEZE_PROTOTYPES_EPOCHS",
    "0.03",
    "MODEL.DINO.OUT_DIM",
    "32",
    "MODEL.DINO.FREEZE_LAST_LAYER_EPOCHS",
    "0.03",
]


def recipe(method: str, *opts: str):
    """No warm-up: the recipes' 10 epochs would keep the rate too low for the freeze to show."""
    return load_cfg(
        str(REPO / "configs" / "pretrain" / CONFIGS[method]),
        [*TINY, *SMALL, "SOLVER.WARMUP_EPOCHS", "0.0", *opts],
    )


@pytest.mark.parametrize("method", list(CONFIGS))
def test_each_method_trains_converts_and_resumes_exactly(method, shared_data, tmp_path):
    out, images = tmp_path / "out", str(shared_data / "bccd" / "JPEGImages")
    final, weights = train_three_iterations(
        recipe(method, "DATA.ROOT", images, "OUTPUT_DIR", str(out))
    )
    first, second = (
        torch.load(out / f"checkpoint_0000000{i}.pth", map_location="cpu", weights_only=False)[
            "model"
        ]
        for i in (1, 2)
    )
    if method == "swav":
        assert int(weights["iteration"]) == 3
        # Frozen in step 1: the prototypes stay as normalised at its start (a LARS step with
        # weight decay would take their norms off 1 by ~1e-5); trained in step 3.
        assert (first["prototypes.weight"].norm(dim=1) - 1).abs().max() < 1e-6
        assert (weights["prototypes.weight"] - second["prototypes.weight"]).abs().max() > 1e-6
    else:  # the teacher, the centre and the momentum schedule's count resume from here
        assert int(weights["momentum_schedule.step"]) == 3 and weights["center"].abs().sum() > 0
        student, teacher = (
            f"{e}.head.last_layer.weight_v" for e in ("query_encoder", "key_encoder")
        )
        # Frozen in step 1: the student's last layer is still the teacher's (its EMA copy of a
        # layer that did not move); trained in step 3.
        assert (first[student] - first[teacher]).abs().max() < 1e-6
        assert (weights[student] - second[student]).abs().max() > 1e-5
    losses = metrics(out)
    assert list(losses) == [1, 2, 3] and all(math.isfinite(x) for x in losses.values())

    converted = tmp_path / f"{method}.pkl"
    summary = convert(final, str(converted), encoder="key" if method == "dino" else "query")
    assert summary["format"] == "pretrain" and len(summary["kept"]) == 100  # ResNet-18
    with open(converted, "rb") as f:
        d2 = pickle.load(f)["model"]
    encoder = "key_encoder" if method == "dino" else "query_encoder"  # DINO's teacher
    assert (
        d2["res2.0.conv1.weight"] == weights[f"{encoder}.backbone.layer1.0.conv1.weight"].numpy()
    ).all()

    assert_resumes_exactly(
        lambda folder: recipe(method, "DATA.ROOT", images, "OUTPUT_DIR", folder), out, tmp_path
    )


# SwAV's queue of App. A.1 holding one global batch (each process its share): filled at step 1,
# in the Sinkhorn of steps 2 and 3.
QUEUE = ["MODEL.SWAV.QUEUE_LENGTH", "8", "MODEL.SWAV.QUEUE_START_EPOCH", "0.0"]


def _steps(out_dir: str, case: str) -> None:
    """Two large crops and two small ones; 40 steps an epoch: the first step is frozen."""
    method, _, queue = case.partition("+")
    steps_on_crops(
        out_dir, recipe(method, *(QUEUE if queue else [])), (32, 32, 16, 16), iters_per_epoch=40
    )


@pytest.mark.slow
@pytest.mark.parametrize("case", ["swav", "swav+queue", "dino"])
def test_two_gloo_processes_step_like_one(case, tmp_path):
    assert_two_processes_step_like_one(_steps, case, tmp_path)
