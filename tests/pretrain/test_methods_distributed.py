"""SimCLR, BYOL, SimSiam and MoCo v3 on 2 gloo processes take the steps of 1 process on the same
global batch: global BN (MODEL.SYNC_BN, the recipes' setting) over the backbones' and heads' BN
layers, SimCLR's embeddings gathered with their gradient, MoCo v3's keys gathered, DDP's
averaged gradients, LARS / the fixed predictor rate, the EMA.

In float64, from the same weights and batches, so that equality is the test: in float32 these toy
models (ResNet-18, 16-d heads, 8 images) amplify summation-order noise ~100x a step (SimSiam: 1e-7
at step 1, 1e-3 by step 3, while float64 agrees to 1e-14), which says nothing about the code. The
data path of 1 vs 2 processes is tests/pretrain/test_distributed.py's (MoCo, same sampler)."""

from __future__ import annotations

import os

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from pretrain.common.launch import launch
from tests.conftest import REPO
from tests.pretrain.reference_parts import trainer_step
from tests.pretrain.test_methods import CONFIGS, TINY

STEPS, BATCH = 3, 8


def _steps(out_dir: str, method: str) -> None:
    from pretrain.config import load_cfg

    cfg = load_cfg(
        str(REPO / "configs" / "pretrain" / CONFIGS[method]), [*TINY, "SOLVER.WARMUP_EPOCHS", "0.0"]
    )
    steps_on_crops(out_dir, cfg, (32, 32))


def steps_on_crops(out_dir: str, cfg, sizes: tuple[int, ...], iters_per_epoch: int = STEPS):
    """STEPS trainer steps of the config's model in float64 on random crops of `sizes` px (the
    process's share of each global batch); rank 0 saves the losses and the model's state."""
    import pretrain.common.distributed as du
    from pretrain.pretraining import build_optimizer
    from pretrain.models.registry import build_model
    from pretrain.models.sync_bn import convert_to_sync_bn

    du.init_from_env("cpu")
    rank, world = du.get_rank(), du.get_world_size()
    torch.manual_seed(0)
    model = convert_to_sync_bn(build_model(cfg), "cpu").double()
    model.start_run(0, iters_per_epoch, STEPS)  # as the trainer does
    optimizer, scheduler = build_optimizer(cfg, model, iters_per_epoch, total_iters=STEPS)
    step_model = DistributedDataParallel(model) if world > 1 else model
    g = torch.Generator().manual_seed(1)
    mine = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    losses = []
    for _ in range(STEPS):
        crops = [
            torch.randn(BATCH, 3, size, size, generator=g, dtype=torch.float64)[mine]
            for size in sizes
        ]
        loss = trainer_step(model, optimizer, scheduler, *crops, step_model=step_model)
        losses.append(du.all_reduce_mean(loss, "cpu"))  # as the log averages them
    if rank == 0:
        torch.save(
            {"losses": losses, "model": model.state_dict()}, os.path.join(out_dir, f"{world}.pt")
        )


@pytest.mark.slow
@pytest.mark.parametrize("method", list(CONFIGS))
def test_two_gloo_processes_step_like_one(method, tmp_path):
    assert_two_processes_step_like_one(_steps, method, tmp_path)


def assert_two_processes_step_like_one(steps, method: str, tmp_path) -> None:
    """`steps(out_dir, method)` run by 1 and by 2 processes: the same losses and state."""
    launch(steps, 1, (str(tmp_path), method))
    launch(steps, 2, (str(tmp_path), method))
    one, two = (torch.load(tmp_path / f"{n}.pt", weights_only=False) for n in (1, 2))
    assert one["losses"] == pytest.approx(two["losses"], abs=1e-10)
    assert one["model"].keys() == two["model"].keys()
    for name, value in one["model"].items():
        if not value.numel():  # BYOL's, MoCo v3's and DINO's empty queue
            continue
        diff = (value.double() - two["model"][name].double()).abs().max().item()
        assert diff <= 1e-10, f"{name} differs by {diff:.2e}"
