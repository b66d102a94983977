"""Host-to-device copies that never stall the host. The per-sample parameters are drawn on the
CPU; copying them from ordinary (pageable) memory would make CUDA wait for every queued kernel
first (the previous training step included), so they go through pinned memory asynchronously and
the host keeps launching ahead of the GPU."""

from __future__ import annotations

import torch


def to_device(
    values: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None
) -> torch.Tensor:
    if dtype is not None and values.dtype != dtype:
        values = values.to(dtype)
    if device.type != "cuda" or values.device.type == "cuda":
        return values.to(device)
    return values.pin_memory().to(device, non_blocking=True)


def constant(values, device: torch.device, dtype=torch.float32) -> torch.Tensor:
    """A small constant (mean, std, fill) as a (1, C, 1, 1) tensor on `device`."""
    return to_device(torch.tensor(values, dtype=dtype), device).view(1, -1, 1, 1)
