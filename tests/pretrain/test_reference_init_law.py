"""The reference tests' initialisation check (reference_parts.assert_same_init_law) fails when a
release's initialisation is put back the other way: the differences the method-contract review
found (zero_init_residual, a bias the release does not have) and the ones its RMS test is there
for (a different random law, a stem conv left at torch's default)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from tests.pretrain.reference_parts import (
    FEAT_DIM,
    HIDDEN,
    PRED_HIDDEN,
    assert_same_init_law,
    mlp,
    network,
    project,
)


def test_a_trunk_without_the_releases_zero_init_residual_is_caught():
    model, _, _ = project("simsiam", "MODEL.ZERO_INIT_RESIDUAL", "False")
    release = network(mlp([512, HIDDEN, HIDDEN, FEAT_DIM], last="plain"), zero_init_residual=True)
    with pytest.raises(
        AssertionError, match=r"bn2\.weight: the release starts it at the constant 0"
    ):
        assert_same_init_law(model.query_encoder.state_dict(), release.state_dict(), "f")


def test_a_bias_the_release_does_not_have_is_caught():
    """BYOL's release ends its predictor in a Linear without a bias; one with a bias (which ours
    once had) is named."""
    ours = mlp([FEAT_DIM, PRED_HIDDEN, FEAT_DIM], last="none", last_bias=True)
    release = mlp([FEAT_DIM, PRED_HIDDEN, FEAT_DIM], last="none", last_bias=False)
    with pytest.raises(AssertionError, match=r"3\.bias only in ours"):
        assert_same_init_law(ours.state_dict(), release.state_dict(), "predictor")


def test_a_different_random_law_is_caught():
    torch.manual_seed(0)
    release = nn.Linear(512, 256)  # torch's default: RMS 1 / sqrt(3 * 512)
    ours = nn.Linear(512, 256)
    nn.init.normal_(ours.weight, std=0.01)  # a common head init: 0.39x the default's RMS
    with pytest.raises(AssertionError, match=r"weight: initial scale 0\.39x"):
        assert_same_init_law(ours.state_dict(), release.state_dict(), "head")


def test_a_stem_left_at_torchs_default_is_caught():
    """CMC's release draws its 1- and 2-channel stems from N(0, 2 / (7 * 7 * 64)); torch's
    default for a 1-channel 7x7 conv is 3.2x that scale."""
    torch.manual_seed(0)
    release = nn.Conv2d(1, 64, 7, bias=False)
    nn.init.normal_(release.weight, 0.0, math.sqrt(2.0 / (7 * 7 * 64)))
    ours = nn.Conv2d(1, 64, 7, bias=False)
    with pytest.raises(AssertionError, match="initial scale 3.2"):
        assert_same_init_law(ours.state_dict(), release.state_dict(), "stem")


def test_the_same_law_under_another_seed_passes():
    torch.manual_seed(0)
    release = network(mlp([512, HIDDEN, FEAT_DIM], last="none"))
    torch.manual_seed(1)
    ours = network(mlp([512, HIDDEN, FEAT_DIM], last="none"))
    assert not torch.equal(ours.backbone.conv1.weight, release.backbone.conv1.weight)
    assert_same_init_law(ours.state_dict(), release.state_dict(), "net")
