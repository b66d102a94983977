"""SOLVER.CPU_AMP (pretrain/common/cpu_bf16.py): bf16 autocast on CPUs that compute it natively,
fp32 elsewhere; Detectron2 models train in bf16 and evaluate in fp32."""

import pytest
import torch

from pretrain.common.cpu_bf16 import cpu_has_native_bf16, train_in_cpu_bf16
from pretrain.pretraining import mixed_precision

native = pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")


class LossesInTraining(torch.nn.Module):
    """Like a Detectron2 model: a dict of losses while training, predictions in eval mode."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.seen = []

    def forward(self, x):
        y = self.conv(x)
        self.seen.append(y.dtype)
        return {"loss": y.mean()} if self.training else y


def test_cpu_runs_fp32_unless_asked():
    assert mixed_precision("bf16", "cpu")[0] is None
    assert mixed_precision("off", "cpu", cpu_amp=True)[0] is (
        torch.bfloat16 if cpu_has_native_bf16() else None
    )


@native
def test_detectron2_style_model_trains_in_bf16_and_evaluates_in_fp32():
    model = train_in_cpu_bf16(LossesInTraining())
    x = torch.randn(2, 3, 8, 8)
    losses = model(x)
    assert model.seen[-1] == torch.bfloat16 and losses["loss"].dtype == torch.float32
    losses["loss"].backward()
    assert model.conv.weight.grad.dtype == torch.float32  # the weights stay fp32
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    model.eval()
    assert model(x).dtype == torch.float32 and model.seen[-1] == torch.float32
