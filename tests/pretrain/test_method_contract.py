"""The method contract (pretrain/models/method.py): every registered MODEL.METHOD, built from its
shipped recipe (shrunk to a CPU test), takes the inputs its `views` declare and answers every
question the engine, the readouts and the probes ask, with nothing probed by hasattr."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision

from pretrain.common.errors import ConfigError
from pretrain.config import load_cfg
from pretrain.entropy_reconstruction import DISCRETE, SPHERE
from pretrain.models.backbone import backbone_of_cfg
from pretrain.models import method as contract
from pretrain.models.method import METHODS, Method, StepOutput
from pretrain.models.registry import build_model
from tests.conftest import REPO
from tests.pretrain.reference_parts import assert_same_init_law, release_law_

RECIPES = {
    "moco": "mocov2_R50_200ep.yaml",
    "simclr": "simclr_R50_100ep.yaml",
    "byol": "byol_R50_1000ep.yaml",
    "simsiam": "simsiam_R50_100ep.yaml",
    "mocov3": "mocov3_R50_100ep.yaml",
    "insdis": "insdis_R50_200ep.yaml",
    "pirl": "pirl_R50_800ep.yaml",
    "swav": "swav_R50_800ep.yaml",
    "dino": "dino_R50_100ep.yaml",
    "amdim": "amdim_R50_IN128_50ep.yaml",
    "cmc": "cmc_lab_R50_200ep.yaml",
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
    "SOLVER.BATCH_SIZE",
    "4",
    "MODEL.QUEUE_SIZE",
    "8",
    "MODEL.MEMORY_BANK.NEGATIVES",
    "8",
    "MODEL.DINO.OUT_DIM",
    "32",
    "MODEL.SWAV.NUM_PROTOTYPES",
    "8",
    "MODEL.SWAV.QUEUE_LENGTH",
    "0",
]
BATCH, SIZE, SAMPLES = 4, 32, 16


def tiny_model(name: str) -> tuple[Method, object]:
    cfg = load_cfg(str(REPO / "configs" / "pretrain" / RECIPES[name]), TINY)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.start_run(SAMPLES, iters_per_epoch=4, total_iters=8)
    return model, cfg


def step_inputs(model: Method, cfg) -> list[torch.Tensor]:
    """What one step feeds `forward`, built from what the method declares it reads."""
    g = torch.Generator().manual_seed(1)

    def images(size=SIZE, channels=3):
        return torch.randn(BATCH, channels, size, size, generator=g)

    grid = cfg.MODEL.JIGSAW.GRID
    patches = torch.randn(BATCH, grid**2, 3, 16, 16, generator=g)
    indices = torch.arange(BATCH)
    views = model.views
    if views == contract.VIEWS_PAIR:
        return [images(), images()]
    if views == contract.VIEWS_PAIR_JIGSAW:
        return [images(), images(), *([patches] if cfg.MODEL.JIGSAW.ENABLED else [])]
    if views == contract.VIEWS_INDEXED:
        return [images(), indices]
    if views == contract.VIEWS_INDEXED_JIGSAW:
        return [images(), patches, indices]
    if views == contract.VIEWS_MULTI_CROP:
        small = [images(16) for _ in range(cfg.DATA.MULTI_CROP.NUM_SMALL)]
        return [images(), images(), *small]
    if views == contract.VIEWS_CHANNEL_GROUPS:
        first, second = cfg.DATA.CHANNEL_SPLIT
        return [images(channels=first), images(channels=second)]
    raise AssertionError(f"{type(model).__name__}: undeclared views {views!r}")


def test_every_shipped_recipe_names_a_registered_method():
    recipes = sorted((REPO / "configs" / "pretrain").rglob("*.yaml"))
    names = {load_cfg(str(path)).MODEL.METHOD for path in recipes}
    assert names <= set(METHODS)
    assert set(RECIPES) - {"cmc"} == set(METHODS)  # every method is exercised below


@pytest.mark.parametrize("name", list(RECIPES))
def test_a_method_answers_the_contract(name):
    model, cfg = tiny_model(name)
    assert isinstance(model, Method)
    out = model(*step_inputs(model, cfg))
    assert isinstance(out, StepOutput)
    assert out.loss.ndim == 0 and math.isfinite(out.loss.item()) and out.loss.requires_grad
    assert out.logits.ndim == 2 and len(out.logits) >= BATCH  # positive in column 0
    assert out.terms and all(not t.requires_grad and t.ndim == 0 for t in out.terms.values())

    # I_NCE is logged from InfoNCE terms only, and only where there are negatives.
    info_nce = tuple(model.info_nce_terms)
    assert set(info_nce) <= set(out.terms)
    assert bool(info_nce) == (name in ("moco", "cmc", "simclr", "mocov3")), info_nce
    if info_nce:
        assert model.num_negatives(BATCH) > 0

    # Every method shows the ER monitor a pair: the log's entropy, reconstruction and I_ER.
    assert out.er is not None and not out.er.source.requires_grad
    assert out.er.support == (DISCRETE if name in ("swav", "dino") else SPHERE)
    assert out.er.source.shape == out.er.target.shape
    assert all(math.isfinite(x) for x in out.er.measure(cfg.MODEL.ER.KAPPA))

    out.loss.backward()
    if model.adjusts_gradients:
        model.before_optimizer_step()
    model.after_optimizer_step()

    backbone = model.readout_backbone(cfg)
    assert isinstance(backbone, nn.Module)
    with torch.no_grad():
        features = backbone.eval()(torch.randn(2, 3, SIZE, SIZE))
    assert features.shape[0] == 2 and features.ndim == 2


ER_RECIPES = {
    "byol": "byol_er_R50_1000ep.yaml",
    "dino": "dino_er_R50_100ep.yaml",
    "swav": "swav_er_R50_800ep.yaml",
}


@pytest.mark.parametrize("name", list(ER_RECIPES))
def test_the_er_variants_loss_is_reconstruction_minus_entropy(name):
    """The ER recipes (MODEL.ER.OBJECTIVE) build their parent method, whose loss is its
    reconstruction term minus the entropy term, both logged; other methods refuse the key."""
    cfg = load_cfg(str(REPO / "configs" / "pretrain" / ER_RECIPES[name]), TINY)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.start_run(SAMPLES, iters_per_epoch=4, total_iters=8)
    assert model.name == name and model.has_er_variant
    out = model(*step_inputs(model, cfg))
    rec = {"byol": "reconstruction", "dino": "cross_entropy", "swav": "swapped_prediction"}[name]
    assert set(out.terms) == {rec, "entropy"}
    w = cfg.MODEL.ER.ENTROPY_WEIGHT
    assert out.loss.item() == pytest.approx(
        (out.terms[rec] - w * out.terms["entropy"]).item(), rel=1e-6
    )
    out.loss.backward()
    assert all(p.grad is not None for p in model.query_encoder.backbone.parameters())
    with pytest.raises(ConfigError, match="MODEL.ER.OBJECTIVE with MODEL.METHOD simclr"):
        build_model(
            load_cfg(
                str(REPO / "configs" / "pretrain" / RECIPES["simclr"]),
                [*TINY, "MODEL.ER.OBJECTIVE", "True"],
            )
        )


def test_each_direction_and_branch_is_a_named_term():
    """The breakdown sums to the loss where the loss is the terms' plain sum."""
    for name, expected in (
        ("cmc", {"1->2", "2->1"}),
        ("byol", {"1->2", "2->1"}),
        ("simsiam", {"1->2", "2->1"}),
    ):
        model, cfg = tiny_model(name)
        out = model(*step_inputs(model, cfg))
        assert set(out.terms) == expected
        assert out.loss.item() == pytest.approx(sum(out.terms.values()).item(), rel=1e-6)


def test_the_engine_never_probes_a_method_with_hasattr():
    """The trainer asks the contract; a method's optional parts are never guessed at."""
    for path in (Path(REPO) / "pretrain" / "engine").glob("*.py"):
        calls = [
            node
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("hasattr", "getattr")
        ]
        assert not calls, f"{path.name} probes with hasattr/getattr"


@pytest.mark.parametrize(
    "name, zero_init, framework",
    [
        ("simsiam", True, "torch"),
        ("mocov3", True, "torch"),
        ("moco", False, "torch"),
        ("simclr", True, "tf"),
        ("byol", True, "haiku"),
    ],
)
def test_backbones_start_as_the_releases_build_them(name, zero_init, framework):
    """SimSiam's, MoCo v3's and SimCLR's releases start each residual block's last BN scale at 0
    (BYOL's haiku ResNet its bottleneck blocks': ResNet-50 here); MoCo's does not. The PyTorch
    releases draw torchvision's weights: same seed, same draws, tensor for tensor. SimCLR's
    (TF) and BYOL's (haiku) draw by their framework's law (reference_parts.release_law_): ours
    must draw by the same law."""
    arch = "resnet18" if framework == "torch" else "resnet50"
    cfg = load_cfg(str(REPO / "configs" / "pretrain" / RECIPES[name]), ["MODEL.ARCH", arch])
    torch.manual_seed(0)
    ours, _ = backbone_of_cfg(cfg)
    torch.manual_seed(0)
    release = getattr(torchvision.models, arch)(zero_init_residual=zero_init)
    release_law_(release, framework)
    expected = {k: v for k, v in release.state_dict().items() if not k.startswith("fc.")}
    assert ours.state_dict().keys() == expected.keys()
    if framework == "torch":
        assert all(torch.equal(ours.state_dict()[k], v) for k, v in expected.items())
    else:
        assert_same_init_law(ours.state_dict(), expected, name)


# Each release's linear warm-up, written from its code: the fraction of the peak lr at iteration
# `it` (0-based) of W warm-up iterations.
RELEASE_WARMUPS = {
    "simclr": lambda it, w: it / w,  # tag 1.0: global_step / warmup_steps * lr
    "byol": lambda it, w: it / w,  # lr * global_step / warmup_steps
    "mocov3": lambda it, w: it / w,  # lr * epoch / warmup_epochs, epoch = e + i / n
    "dino": lambda it, w: float(np.linspace(0, 1, w)[it]),  # utils.cosine_scheduler
    "swav": lambda it, w: float(np.linspace(0, 1, w)[it]),  # (from 0 here; the release's 0.3)
}


@pytest.mark.parametrize("name", list(RELEASE_WARMUPS))
def test_warm_ups_ramp_as_the_releases_do(name):
    from pretrain.pretraining import build_optimizer

    cfg = load_cfg(
        str(REPO / "configs" / "pretrain" / RECIPES[name]), [*TINY, "SOLVER.WARMUP_EPOCHS", "2.0"]
    )
    model = build_model(cfg)
    optimizer, scheduler = build_optimizer(cfg, model, iters_per_epoch=5, total_iters=40)
    peak = optimizer.param_groups[0]["initial_lr"]
    for it in range(10):  # W = 10 warm-up iterations
        lr = optimizer.param_groups[0]["lr"]
        assert lr == pytest.approx(peak * RELEASE_WARMUPS[name](it, 10), abs=1e-12), it
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(peak)  # the cosine starts at the peak


def test_simsiam_sets_its_lr_once_per_epoch_as_its_release():
    """main_simsiam.py: lr_e = lr * 0.5 * (1 + cos(pi e / E)) at each epoch's start; the
    predictor's group stays at lr (fix_pred_lr)."""
    from pretrain.pretraining import build_optimizer

    cfg = load_cfg(str(REPO / "configs" / "pretrain" / RECIPES["simsiam"]), TINY)
    model = build_model(cfg)
    optimizer, scheduler = build_optimizer(cfg, model, iters_per_epoch=3, total_iters=12)
    groups = {bool(g.get("fixed_lr")): g for g in optimizer.param_groups}
    peak = groups[False]["initial_lr"]
    for it in range(12):
        epoch = it // 3
        assert groups[False]["lr"] == pytest.approx(
            peak * 0.5 * (1 + math.cos(math.pi * epoch / 4)), abs=1e-12
        ), it
        assert groups[True]["lr"] == pytest.approx(groups[True]["initial_lr"])
        optimizer.step()
        scheduler.step()


def test_no_method_subclasses_another():
    """Shared parts (EMA target, memory bank, queue) are held, not inherited from MoCo."""
    for name, cls in METHODS.items():
        others = [base for base in cls.__mro__[1:] if base in METHODS.values()]
        assert not others, f"{name} subclasses {others}"


@pytest.mark.parametrize("name", ["byol", "mocov3", "dino"])
def test_checkpoints_from_before_the_contract_still_load(name):
    """Before the contract these were built on MoCo and their checkpoints hold MoCo's empty
    queue and its pointer; a resume or a readout of such a checkpoint still loads."""
    model, _ = tiny_model(name)
    old = {**model.state_dict(), "queue": torch.zeros(0, 16), "queue_ptr": torch.zeros(())}
    fresh, _ = tiny_model(name)
    fresh.load_state_dict(old)  # strict
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())
