"""MODEL.METHOD insdis / pirl end to end: each shipped ResNet-50 recipe, shrunk to a CPU test,
trains three iterations through the library path of tools/pretrain.py on real images (each
sample carrying its index to the memory bank), writes checkpoints holding the bank and its
sampler's step that tools/convert.py's converter reads the backbone out of, and a run resumed
from the second checkpoint ends exactly where the whole run did, bank included; plus the
config errors of the memory-bank methods."""

from __future__ import annotations

import math

import pytest
import torch

from pretrain.common.errors import ConfigError
from pretrain.config import load_cfg
from pretrain.pretraining import build_optimizer, train
from pretrain.models.registry import build_model
from tests.conftest import REPO
from tests.pretrain.test_methods import (
    TINY,
    assert_backbone_converts,
    assert_resumes_exactly,
    metrics,
)

CONFIGS = {"insdis": "insdis_R50_200ep.yaml", "pirl": "pirl_R50_800ep.yaml"}
# 16 negatives, and JigSaw patches of 8 px in 12 px cells (a 36 px crop) for the CPU.
TINY_BANK = [
    "MODEL.MEMORY_BANK.NEGATIVES",
    "16",
    "MODEL.JIGSAW.CELL",
    "12",
    "MODEL.JIGSAW.PATCH",
    "8",
]


def recipe(method: str, *opts: str):
    return load_cfg(
        str(REPO / "configs" / "pretrain" / CONFIGS[method]), [*TINY, *TINY_BANK, *opts]
    )


@pytest.mark.parametrize(
    "method, loss", [("insdis", "nce"), ("pirl", "nce"), ("insdis", "infonce")]
)
def test_each_method_trains_converts_and_resumes_exactly(method, loss, shared_data, tmp_path):
    out = tmp_path / "out"
    images = shared_data / "bccd" / "JPEGImages"
    opts = ["DATA.ROOT", str(images), "MODEL.MEMORY_BANK.LOSS", loss]
    final = train(recipe(method, *opts, "OUTPUT_DIR", str(out)))
    state = torch.load(final, map_location="cpu", weights_only=False)
    weights = state["model"]
    bank = weights["memory_bank.vectors"]
    assert bank.shape == (len(list(images.glob("*.jpg"))), 16)  # one entry per image
    assert torch.allclose(bank.norm(dim=1), torch.ones(len(bank)), atol=1e-5)
    assert int(weights["memory_bank.step"]) == 3
    assert (float(weights["memory_bank.z"]) > 0) == (loss == "nce")  # set by the first batch
    assert any(k.startswith("jigsaw_head.") for k in weights) == (method == "pirl")
    losses = metrics(out)
    assert list(losses) == [1, 2, 3] and all(math.isfinite(x) for x in losses.values())

    assert_backbone_converts(final, weights, tmp_path / f"{method}.pkl")
    # Interrupted after iteration 2: the resumed run draws the same negatives from the same
    # bank and ends where the whole one did, bit for bit.
    assert_resumes_exactly(
        lambda folder: recipe(method, *opts, "OUTPUT_DIR", folder), out, tmp_path
    )
    # The bank moved: the entries of the images seen differ from the seeded initial bank.
    initial = torch.load(out / "checkpoint_00000001.pth", map_location="cpu", weights_only=False)[
        "model"
    ]["memory_bank.vectors"]
    assert 0 < int((initial != bank).any(dim=1).sum()) <= 2 * 8


def test_a_model_built_without_the_bank_loads_a_checkpoints_bank():
    """Readouts and sweeps build the model from the config alone, then load the weights."""
    cfg = recipe("insdis")
    trained = build_model(cfg)
    trained.memory_bank.allocate(40)
    fresh = build_model(cfg)
    assert fresh.memory_bank.vectors.shape == (0, 16)
    fresh.load_state_dict(trained.state_dict())
    assert torch.equal(fresh.memory_bank.vectors, trained.memory_bank.vectors)


@pytest.mark.parametrize(
    "opts, match",
    [
        (["MODEL.METHOD", "insdis", "MODEL.MEMORY_BANK.LOSS", "softmax"], "MODEL.MEMORY_BANK.LOSS"),
        (["MODEL.METHOD", "insdis", "MODEL.MEMORY_BANK.NEGATIVES", "0"], "NEGATIVES 0"),
        (["MODEL.METHOD", "insdis", "MODEL.MEMORY_BANK.MOMENTUM", "1.0"], "MOMENTUM 1.0"),
        (["MODEL.METHOD", "insdis", "MODEL.JIGSAW.ENABLED", "True"], "MODEL.JIGSAW.ENABLED"),
        (["MODEL.METHOD", "pirl"], "needs MODEL.JIGSAW.ENABLED"),
        (["MODEL.METHOD", "insdis", "DATA.PIPELINE", "gpu"], "DATA.PIPELINE 'gpu'"),
        (["MODEL.METHOD", "insdis", "DATA.VIEWS_FROM", "folder"], "DATA.VIEWS_FROM 'folder'"),
    ],
)
def test_config_errors_name_the_key(opts, match):
    cfg = load_cfg(opts=["MODEL.ARCH", "resnet18", "MODEL.HEAD", "linear", *opts])
    with pytest.raises(ConfigError, match=match):
        build_model(cfg)


def test_insdis_steps_its_learning_rate_down_at_epochs_120_and_160():
    cfg = recipe("insdis", "SOLVER.LR_STEPS", "(120, 160)")
    model = build_model(cfg)
    optimizer, scheduler = build_optimizer(cfg, model, iters_per_epoch=2, total_iters=400)
    base = cfg.SOLVER.BASE_LR * cfg.SOLVER.BATCH_SIZE / 256
    rates = []
    for _ in range(400):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == rates[239] == pytest.approx(base)  # epochs 0-119
    assert rates[240] == rates[319] == pytest.approx(base * 0.1)  # epochs 120-159
    assert rates[320] == rates[399] == pytest.approx(base * 0.01)
