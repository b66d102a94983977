"""InsDis and PIRL on 2 gloo processes take the steps of 1 process on the same global batch: the
batch's indices and embeddings gathered before the bank update (so every process holds the same
bank), the negatives and the patch order drawn for the global batch, NCE's Z from the global
batch, global BN (MODEL.SYNC_BN) and DDP's averaged gradients. In float64, as
tests/pretrain/test_methods_distributed.py (which says why)."""

from __future__ import annotations

import os

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from pretrain.common.launch import launch
from tests.pretrain.test_memory_bank_methods import recipe
from tests.pretrain.reference_parts import trainer_step

STEPS, BATCH, IMAGES = 3, 8, 40


def _steps(out_dir: str, method: str) -> None:
    import pretrain.common.distributed as du
    from pretrain.pretraining import build_optimizer
    from pretrain.models.registry import build_model
    from pretrain.models.sync_bn import convert_to_sync_bn

    du.init_from_env("cpu")
    rank, world = du.get_rank(), du.get_world_size()
    cfg = recipe(method, "SOLVER.WARMUP_EPOCHS", "0.0")
    torch.manual_seed(0)
    model = convert_to_sync_bn(build_model(cfg), "cpu").double()
    model.memory_bank.allocate(IMAGES)
    optimizer, scheduler = build_optimizer(cfg, model, iters_per_epoch=STEPS, total_iters=STEPS)
    step_model = DistributedDataParallel(model) if world > 1 else model
    g = torch.Generator().manual_seed(1)
    mine = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    losses = []
    for _ in range(STEPS):
        images = torch.randn(BATCH, 3, 32, 32, generator=g, dtype=torch.float64)
        patches = torch.randn(BATCH, 9, 3, 8, 8, generator=g, dtype=torch.float64)
        rows = torch.randperm(IMAGES, generator=g)[:BATCH]
        views = (images, patches, rows) if method == "pirl" else (images, rows)
        loss = trainer_step(
            model, optimizer, scheduler, *(v[mine] for v in views), step_model=step_model
        )
        losses.append(du.all_reduce_mean(loss, "cpu"))  # as the log averages them
    banks = du.all_gather_cat(model.memory_bank.vectors.unsqueeze(0))
    if rank == 0:
        torch.save(
            {"losses": losses, "model": model.state_dict(), "banks": banks},
            os.path.join(out_dir, f"{world}.pt"),
        )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["insdis", "pirl"])
def test_two_gloo_processes_step_like_one(method, tmp_path):
    launch(_steps, 1, (str(tmp_path), method))
    launch(_steps, 2, (str(tmp_path), method))
    one, two = (torch.load(tmp_path / f"{n}.pt", weights_only=False) for n in (1, 2))
    assert torch.equal(two["banks"][0], two["banks"][1])  # both processes hold the same bank
    assert one["losses"] == pytest.approx(two["losses"], abs=1e-10)
    assert one["model"].keys() == two["model"].keys()
    for name, value in one["model"].items():
        diff = (value.double() - two["model"][name].double()).abs().max().item()
        scale = max(1.0, value.double().abs().max().item())  # Z is n * E[exp(s / T)]: large
        assert diff <= 1e-10 * scale, f"{name} differs by {diff:.2e}"
