"""MODEL.METHOD simclr / byol / simsiam / mocov3 end to end: each shipped ResNet-50 recipe, shrunk
to a CPU test, trains three iterations through the library path of tools/pretrain.py on real
images, writes checkpoints that tools/convert.py's converter reads the backbone out of, and a run
resumed from the second checkpoint ends exactly where the whole run did; plus the optimizer
groups (LARS exclusions, SimSiam's fixed predictor rate) and the config errors."""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from detection.convert import ConversionError, convert
from pretrain.common.errors import ConfigError
from pretrain.config import load_cfg
from pretrain.pretraining import build_optimizer, train
from pretrain.models.registry import build_model
from tests.conftest import REPO

CONFIGS = {
    "simclr": "simclr_R50_100ep.yaml",
    "byol": "byol_R50_1000ep.yaml",
    "simsiam": "simsiam_R50_100ep.yaml",
    "mocov3": "mocov3_R50_100ep.yaml",
}
TINY = [
    "MODEL.ARCH",
    "resnet18",
    "MODEL.HEAD_HIDDEN_DIM",
    "32",
    "MODEL.FEAT_DIM",
    "16",
    "MODEL.PREDICTOR_HIDDEN_DIM",
    "16",
    "DATA.CROP_SIZE",
    "32",
    "DATA.NUM_WORKERS",
    "0",
    "SOLVER.BATCH_SIZE",
    "8",
    "SOLVER.MAX_ITER",
    "3",
    "SOLVER.CHECKPOINT_PERIOD",
    "1",
    "LOG_PERIOD",
    "1",
]


def recipe(method: str, *opts: str):
    return load_cfg(str(REPO / "configs" / "pretrain" / CONFIGS[method]), [*TINY, *opts])


@pytest.mark.parametrize("method", list(CONFIGS))
def test_each_method_trains_converts_and_resumes_exactly(method, shared_data, tmp_path):
    out, images = tmp_path / "out", str(shared_data / "bccd" / "JPEGImages")
    final, weights = train_three_iterations(
        recipe(method, "DATA.ROOT", images, "OUTPUT_DIR", str(out))
    )
    has_target = method in ("byol", "mocov3")
    assert any(k.startswith("key_encoder.backbone.") for k in weights) == has_target
    assert any(k.startswith("predictor.") for k in weights) == (method != "simclr")
    if has_target:
        assert int(weights["momentum_schedule.step"]) == 3  # the annealing resumes from here
    losses = metrics(out)
    assert list(losses) == [1, 2, 3] and all(math.isfinite(x) for x in losses.values())
    # I_ER for every method; I_NCE only for those with negatives (SimCLR, MoCo v3).
    with open(out / "metrics.jsonl") as f:
        logged = [r for r in map(json.loads, f) if "loss" in r]
    assert all(
        math.isfinite(r["I_ER"])
        and r["I_ER"] == pytest.approx(r["er/entropy"] - r["er/reconstruction"])
        for r in logged
    )
    assert all(("I_NCE" in r) == (method in ("simclr", "mocov3")) for r in logged)

    assert_backbone_converts(final, weights, tmp_path / f"{method}.pkl")
    if not has_target:  # one encoder: there is no momentum encoder to convert
        with pytest.raises(ConversionError, match="no backbone"):
            convert(final, str(tmp_path / "key.pkl"), encoder="key")

    assert_resumes_exactly(
        lambda folder: recipe(method, "DATA.ROOT", images, "OUTPUT_DIR", folder), out, tmp_path
    )


def assert_backbone_converts(final: str, weights: dict, converted: Path) -> None:
    """tools/convert.py's converter finds the query backbone (ResNet-18) in the checkpoint."""
    summary = convert(final, str(converted))
    assert summary["format"] == "pretrain" and len(summary["kept"]) == 100  # ResNet-18
    with open(converted, "rb") as f:
        d2 = pickle.load(f)["model"]
    assert (
        d2["res2.0.conv1.weight"] == weights["query_encoder.backbone.layer1.0.conv1.weight"].numpy()
    ).all()


def train_three_iterations(cfg) -> tuple[str, dict]:
    """(the final checkpoint's path, its model state) of the config's 3-iteration run."""
    final = train(cfg)
    state = torch.load(final, map_location="cpu", weights_only=False)
    assert state["iteration"] == 3
    return final, state["model"]


def assert_resumes_exactly(cfg_in, out: Path, tmp_path: Path) -> None:
    """Interrupted after iteration 2: a run resumed from that checkpoint of the 3-iteration run in
    `out` ends where the whole one did, bit for bit (optimizer groups, schedules, the momentum
    schedule's count, RNG). `cfg_in(folder)`: the run's config with OUTPUT_DIR folder."""
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(out / "checkpoint_00000002.pth", resumed)
    (resumed / "last_checkpoint").write_text("checkpoint_00000002.pth")
    train(cfg_in(str(resumed)), resume=True)
    assert metrics(resumed) == {3: metrics(out)[3]}
    weights = torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]
    again = torch.load(resumed / "model_final.pth", map_location="cpu", weights_only=False)
    assert again["model"].keys() == weights.keys()
    for name, value in weights.items():
        assert torch.equal(again["model"][name], value), name


def metrics(output_dir: Path) -> dict[int, float]:
    with open(output_dir / "metrics.jsonl") as f:
        return {r["iteration"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def test_lars_leaves_biases_and_bn_alone_and_simsiam_keeps_its_predictor_rate():
    cfg = recipe("byol")
    model = build_model(cfg)
    optimizer, _ = build_optimizer(cfg, model, iters_per_epoch=10, total_iters=100)
    adapted, excluded = optimizer.param_groups
    assert all(p.ndim > 1 for p in adapted["params"]) and adapted["adapt"]
    assert all(p.ndim == 1 for p in excluded["params"])
    assert excluded["weight_decay"] == 0.0 and not excluded["adapt"]
    assert len(adapted["params"]) + len(excluded["params"]) == len(
        [p for p in model.parameters() if p.requires_grad]
    )

    cfg = recipe("simsiam", "SOLVER.WARMUP_EPOCHS", "0.0", "SOLVER.LR_GRANULARITY", "iteration")
    model = build_model(cfg)
    optimizer, scheduler = build_optimizer(cfg, model, iters_per_epoch=10, total_iters=10)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    base = cfg.SOLVER.BASE_LR * cfg.SOLVER.BATCH_SIZE / 256
    rates = {bool(g.get("fixed_lr")): g["lr"] for g in optimizer.param_groups}
    assert rates[True] == pytest.approx(base) and rates[False] == pytest.approx(base / 2)
    predictor = {id(p) for p in model.predictor.parameters()}
    fixed = next(g for g in optimizer.param_groups if g.get("fixed_lr"))
    assert {id(p) for p in fixed["params"]} == predictor


def test_swavs_larc_adapts_every_parameter_and_dinos_sgd_leaves_biases_and_norms_undecayed():
    """The releases' optimizers (their reference tests step them): SwAV's apex LARC over all
    parameters in one group; DINO's SGD with biases and norms in a group without weight decay."""
    recipes = REPO / "configs" / "pretrain"
    swav = load_cfg(str(recipes / "swav_R50_800ep.yaml"), TINY)
    model = build_model(swav)
    optimizer, _ = build_optimizer(swav, model, iters_per_epoch=10, total_iters=100)
    (group,) = optimizer.param_groups
    assert type(optimizer).__name__ == "LARC" and group["weight_decay"] == swav.SOLVER.WEIGHT_DECAY
    assert len(group["params"]) == len([p for p in model.parameters() if p.requires_grad])
    dino = load_cfg(str(recipes / "dino_R50_100ep.yaml"), TINY)
    model = build_model(dino)
    optimizer, _ = build_optimizer(dino, model, iters_per_epoch=10, total_iters=100)
    decayed, undecayed = optimizer.param_groups
    assert isinstance(optimizer, torch.optim.SGD) and undecayed["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"]) and decayed["weight_decay"] == 1e-4
    assert all(p.ndim == 1 for p in undecayed["params"])


def test_the_default_method_is_moco_with_one_sgd_group():
    cfg = load_cfg(opts=["MODEL.ARCH", "resnet18"])
    model = build_model(cfg)
    optimizer, _ = build_optimizer(cfg, model, iters_per_epoch=10, total_iters=100)
    assert type(model).__name__ == "MoCo" and isinstance(optimizer, torch.optim.SGD)
    assert len(optimizer.param_groups) == 1


@pytest.mark.parametrize(
    "opts, match",
    [
        (["MODEL.METHOD", "swaw"], "MODEL.METHOD 'swaw'"),
        (["MODEL.METHOD", "simclr", "MODEL.MOMENTUM_COSINE", "True"], "MODEL.MOMENTUM_COSINE"),
        (["MODEL.MOMENTUM_COSINE", "True"], "MODEL.MOMENTUM_COSINE"),
        (["MODEL.METHOD", "byol", "MODEL.JIGSAW.ENABLED", "True"], "MODEL.JIGSAW.ENABLED"),
        (["MODEL.METHOD", "simclr", "SOLVER.PREDICTOR_FIXED_LR", "True"], "has no predictor"),
        (["MODEL.METHOD", "simclr", "SOLVER.OPTIMIZER", "adagrad"], "SOLVER.OPTIMIZER 'adagrad'"),
    ],
)
def test_config_errors_name_the_key(opts, match):
    cfg = load_cfg(opts=["MODEL.ARCH", "resnet18", "MODEL.HEAD_HIDDEN_DIM", "16", *opts])
    with pytest.raises(ConfigError, match=match):
        model = build_model(cfg)
        build_optimizer(cfg, model, iters_per_epoch=10, total_iters=100)
