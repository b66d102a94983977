"""bf16 mixed precision on a CPU (SOLVER.CPU_AMP in pretraining and in detection). CPUs with
native bf16 arithmetic (Intel AMX or AVX512-BF16, used through oneDNN) run ResNet convolutions in
bf16 with channels-last activations about twice as fast as in fp32; elsewhere bf16 is emulated and
slower, so it is only turned on where torch reports oneDNN bf16 support."""

from __future__ import annotations

import functools

import torch


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN computes bf16 natively on this CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch built without oneDNN
        return False


def cpu_amp_note() -> str:
    return (
        "note: SOLVER.CPU_AMP: this CPU has no native bf16 (AMX / AVX512-BF16), so the run "
        "stays in fp32"
    )


def train_in_cpu_bf16(model: torch.nn.Module) -> torch.nn.Module:
    """The model in channels-last with its forward run under bf16 autocast while it trains (a
    Detectron2 model returns its losses then, cast back to fp32 here); evaluation stays fp32, so
    boxes and masks are predicted at full precision. In place; returns the model."""
    model = model.to(memory_format=torch.channels_last)
    forward = model.forward

    @functools.wraps(forward)
    def forward_in_bf16_while_training(*args, **kwargs):
        if not model.training:
            return forward(*args, **kwargs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = forward(*args, **kwargs)
        if isinstance(out, dict):
            return {name: value.float() for name, value in out.items()}
        return out

    model.forward = forward_in_bf16_while_training
    return model
