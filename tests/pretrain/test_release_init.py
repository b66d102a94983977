"""MODEL.INIT (pretrain/models/release_init.py): the heads and predictors of the TF and haiku
recipes drawn by their release's law, "torch" drawing nothing, an unknown law named."""

from __future__ import annotations

import pytest
import torch

from pretrain.common.errors import ConfigError
from pretrain.config import load_cfg
from pretrain.models.heads import head_of_cfg, predictor_of_cfg
from pretrain.models.release_init import init_like_release
from tests.pretrain.reference_parts import assert_same_init_law, mlp, release_law_

DIMS = [
    "MODEL.HEAD_HIDDEN_DIM",
    "512",
    "MODEL.FEAT_DIM",
    "128",
    "MODEL.PREDICTOR_HIDDEN_DIM",
    "512",
]


@pytest.mark.parametrize(
    "method, framework, last, last_bias",
    [("simclr", "tf", "scale", False), ("byol", "haiku", "none", False)],
)
def test_heads_and_predictors_draw_by_the_releases_law(method, framework, last, last_bias):
    cfg = load_cfg(
        opts=["MODEL.METHOD", method, "MODEL.HEAD", method, "MODEL.INIT", framework, *DIMS]
    )
    torch.manual_seed(0)
    ours = head_of_cfg(cfg, 2048)
    release = release_law_(mlp([2048, 512, 128], last=last, last_bias=last_bias), framework)
    assert_same_init_law(ours.state_dict(), release.state_dict(), "head")
    if method == "byol":
        predictor = predictor_of_cfg(cfg, "byol")
        release = release_law_(mlp([128, 512, 128], last="none", last_bias=False), framework)
        assert_same_init_law(predictor.state_dict(), release.state_dict(), "predictor")


def test_torch_draws_nothing_and_an_unknown_law_is_named():
    layer = torch.nn.Linear(4, 4)
    before = layer.weight.clone()
    state = torch.random.get_rng_state()
    init_like_release(layer, "torch")
    assert torch.equal(layer.weight, before)
    assert torch.equal(torch.random.get_rng_state(), state)  # the runs so far stay bit for bit
    with pytest.raises(ConfigError, match="MODEL.INIT 'jax'"):
        init_like_release(layer, "jax")
