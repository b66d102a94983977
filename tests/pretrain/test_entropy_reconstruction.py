"""The ER estimators (pretrain/entropy_reconstruction.py) against the authors' release's formulas
(tests/pretrain/reference_er.py) in float64, the named deviation (log I_v without the release's
+1e-7) shown to leave I_ER unchanged, and the monitor every method's step feeds."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pretrain.entropy_reconstruction import (
    DISCRETE,
    SPHERE,
    ERPair,
    entropy,
    log_bessel_iv,
    reconstruction,
)
from tests.pretrain.reference_er import bessel_iv, release_entropy, release_reconstruction


@pytest.mark.parametrize("order, x", [(0, 10.0), (1, 3.0), (3, 10.0), (7.5, 2.0), (63, 10.0)])
def test_the_bessel_series_matches_the_integral_and_torchs_own(order, x):
    expected = math.log(bessel_iv(order, x))
    assert log_bessel_iv(order, x) == pytest.approx(expected, abs=1e-9)
    if order in (0, 1):
        fn = torch.special.i0 if order == 0 else torch.special.i1
        assert log_bessel_iv(order, x) == pytest.approx(
            math.log(fn(torch.tensor(x, dtype=torch.float64)).item()), abs=1e-12
        )


def sphere_batch(n: int, d: int, seed: int, spread: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(1, d, generator=g, dtype=torch.float64)
    return F.normalize(centre + spread * torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def probability_batch(n: int, k: int, seed: int, sharpness: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.softmax(sharpness * torch.randn(n, k, generator=g, dtype=torch.float64), dim=1)


@pytest.mark.parametrize("d, kappa", [(8, 4.0), (16, 10.0)])
def test_sphere_estimators_equal_the_releases_where_its_eps_is_negligible(d, kappa):
    z1, z2 = sphere_batch(64, d, 0), sphere_batch(64, d, 1)
    assert entropy(z1, SPHERE, kappa).item() == pytest.approx(
        release_entropy(z1, "sphere", kappa).item(), abs=1e-6
    )
    assert reconstruction(z1, z2, SPHERE, kappa).item() == pytest.approx(
        release_reconstruction(z1, z2, "sphere", kappa).item(), abs=1e-6
    )


def test_at_128_dimensions_the_releases_eps_shifts_h_and_rec_alike_and_i_er_not():
    """I_63(10) ~ 5e-44: the release's log(I_v + 1e-7) is log 1e-7. Without it, ours equals the
    release's formula exactly; with it, H and Rec move by one constant and H - Rec does not."""
    z1, z2 = sphere_batch(128, 128, 2), sphere_batch(128, 128, 3)
    h, rec = entropy(z2, SPHERE, 10.0).item(), reconstruction(z1, z2, SPHERE, 10.0).item()
    exact_h = release_entropy(z2, "sphere", with_eps=False).item()
    exact_rec = release_reconstruction(z1, z2, "sphere", with_eps=False).item()
    assert h == pytest.approx(exact_h, abs=1e-6) and rec == pytest.approx(exact_rec, abs=1e-6)
    release_h = release_entropy(z2, "sphere").item()
    release_rec = release_reconstruction(z1, z2, "sphere").item()
    assert abs(release_h - h) > 50  # the eps is not a rounding: log 1e-7 - log 5e-44
    assert (h - rec) == pytest.approx(release_h - release_rec, abs=1e-6)


def test_discrete_estimators_equal_the_releases():
    p1, p2 = probability_batch(32, 10, 0), probability_batch(32, 10, 1)
    assert entropy(p1, DISCRETE, 10.0).item() == pytest.approx(
        release_entropy(p1, "discrete").item(), abs=1e-9
    )
    assert reconstruction(p1, p2, DISCRETE, 10.0).item() == pytest.approx(
        release_reconstruction(p1, p2, "discrete").item(), abs=1e-9
    )


def test_the_estimators_order_what_they_should():
    """A spread batch has more entropy than a collapsed one; a faithful reconstruction costs
    less than a noisy one; a uniform batch mean has log K entropy."""
    assert entropy(sphere_batch(64, 16, 0, 2.0), SPHERE, 10.0) > entropy(
        sphere_batch(64, 16, 0, 0.05), SPHERE, 10.0
    )
    z = sphere_batch(64, 16, 4)
    noisy = F.normalize(z + 0.5 * torch.randn_like(z), dim=1)
    assert reconstruction(z, z, SPHERE, 10.0) < reconstruction(z, noisy, SPHERE, 10.0)
    uniform = torch.full((8, 5), 0.2, dtype=torch.float64)
    assert entropy(uniform, DISCRETE, 10.0).item() == pytest.approx(math.log(5), abs=1e-6)


def test_the_monitor_measures_in_float64_from_any_precision():
    z1, z2 = sphere_batch(32, 16, 5).float(), sphere_batch(32, 16, 6).float()
    h, rec = ERPair(SPHERE, z1, z2).measure(10.0)
    assert h == pytest.approx(entropy(z2.double(), SPHERE, 10.0).item(), abs=1e-9)
    assert rec == pytest.approx(
        reconstruction(z1.double(), z2.double(), SPHERE, 10.0).item(), abs=1e-9
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the estimators leave autocast
        assert entropy(z2.bfloat16(), SPHERE, 10.0).dtype == torch.float32
