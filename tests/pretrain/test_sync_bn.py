"""The CPU's cross-process batch norm (pretrain/models/sync_bn.py) under bf16 autocast
(SOLVER.CPU_AMP): its moments stay float32, so features far from zero do not cancel to a
negative variance (NaN), and its statistics are those of both processes' batches together."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pretrain.models.sync_bn import AllReduceBatchNorm2d


def _normalise(rank: int, init: str, inputs: torch.Tensor, results) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        bn = AllReduceBatchNorm2d(3).train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = bn(inputs[rank].to(torch.bfloat16))
        results[rank] = (out.detach().float(), bn.running_mean.clone(), bn.running_var.clone())
    finally:
        dist.destroy_process_group()


def test_bf16_features_far_from_zero_normalise_over_both_processes(tmp_path):
    g = torch.Generator().manual_seed(0)
    inputs = 40 + torch.randn(2, 4, 3, 5, 5, generator=g)  # mean 40, SD 1: E[x^2] ~ 1601
    results = mp.Manager().dict()
    mp.spawn(_normalise, args=(f"file://{tmp_path}/rendezvous", inputs, results), nprocs=2)
    both = inputs.to(torch.bfloat16).double().transpose(0, 1).reshape(-1, 3, 5, 5)  # rank-major
    mean, var = both.mean(dim=(0, 2, 3)), both.var(dim=(0, 2, 3), unbiased=False)
    for rank in (0, 1):
        out, running_mean, running_var = results[rank]
        expected = (inputs[rank].to(torch.bfloat16).double() - mean.view(1, 3, 1, 1)) / (
            var.view(1, 3, 1, 1) + 1e-5
        ).sqrt()
        assert torch.isfinite(out).all()
        assert (out.double() - expected).abs().max() < 0.05  # bf16's output rounding
        assert torch.allclose(running_mean.double(), 0.1 * mean, atol=1e-4)
        n = both.numel() // 3
        assert torch.allclose(running_var.double(), 0.9 + 0.1 * var * n / (n - 1), atol=1e-3)
