"""Weight-initialisation laws of the releases not written in PyTorch (MODEL.INIT), for the
trunk's convolutions and the projection heads' and predictors' Linear layers. Batch norms keep
their ones and zeros (MODEL.ZERO_INIT_RESIDUAL sets the blocks' last scales).

- "torch": what the modules draw when built (torchvision's ResNet: kaiming normal, fan-out, for
  every conv; nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias). The PyTorch
  releases (MoCo, SimSiam, MoCo v3, SwAV, DINO, CMC, InfoMin) build so.
- "tf": SimCLR's TensorFlow release (resnet.py, model_util.py). Convs from
  tf.variance_scaling_initializer()'s defaults: a normal truncated at 2 standard deviations,
  scaled so that its standard deviation is sqrt(1 / fan_in); Linear weights
  N(0, 0.01) (linear_layer's random_normal_initializer(stddev=.01)); biases 0.
- "haiku": BYOL's JAX release (haiku's Conv2D and Linear defaults, which byol/utils/networks.py
  keeps): every weight from hk.initializers.TruncatedNormal(1 / sqrt(fan_in)), a normal of that
  standard deviation truncated at 2 of them (so 0.88 / sqrt(fan_in) after truncation); biases 0.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..common.errors import ConfigError

RELEASE_INITS = ("torch", "tf", "haiku")
# The standard deviation of a unit normal truncated at +-2 (TF's variance scaling divides by it).
_TRUNCATED_UNIT_STD = 0.87962566103423978


def _truncated_normal_(weight: torch.Tensor, std: float) -> None:
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


def fan_in(weight: torch.Tensor) -> int:
    return math.prod(weight.shape[1:])  # (out, in) or (out, in / groups, kh, kw)


@torch.no_grad()
def init_like_release(module: nn.Module, scheme: str) -> nn.Module:
    """Redraw `module`'s conv and Linear layers by MODEL.INIT `scheme` (module docstring);
    "torch" leaves them as built. Returns `module`."""
    if scheme not in RELEASE_INITS:
        raise ConfigError(f"MODEL.INIT {scheme!r}: expected one of {list(RELEASE_INITS)}")
    if scheme == "torch":
        return module
    for layer in module.modules():
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            continue
        unit = 1 / math.sqrt(fan_in(layer.weight))
        if scheme == "haiku":
            _truncated_normal_(layer.weight, unit)
        elif isinstance(layer, nn.Conv2d):
            _truncated_normal_(layer.weight, unit / _TRUNCATED_UNIT_STD)
        else:
            nn.init.normal_(layer.weight, 0.0, 0.01)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return module
