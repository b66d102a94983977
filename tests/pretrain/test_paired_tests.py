"""The paired tests every comparison in a report goes through (pretrain/evaluation/paired_tests.py),
held against hand-computed values and constructed cases whose answer is known."""

import math

import numpy as np
import pytest

from pretrain.evaluation.paired_tests import (
    PairingError,
    mcnemar,
    paired_bootstrap,
    paired_bootstrap_metric,
    significant,
    spearman,
    verdict,
)


def test_mcnemar_counts_only_the_disagreements_and_gives_the_exact_binomial_p():
    # 10 images only A gets right, 2 only B: p = 2 P(X <= 2), X ~ Bin(12, 1/2) = 2 * 79 / 4096.
    a = np.array([1] * 10 + [0] * 2 + [1] * 50 + [0] * 30, dtype=bool)
    b = np.array([0] * 10 + [1] * 2 + [1] * 50 + [0] * 30, dtype=bool)
    result = mcnemar(a, b)
    assert (result["a_only"], result["b_only"]) == (10, 2)
    assert result["p"] == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar(a, a)["p"] == 1.0  # no disagreement: no evidence either way
    with pytest.raises(PairingError):
        mcnemar(a, b[:-1])


def noisy_pairs(gain: float, seeds: int, images: int, noise: float, rng_seed: int):
    """Per-image correctness of a baseline and of a backbone `gain` (probability) better, each
    seed's accuracy shifted by a seed effect of SD `noise`: what runs of two inits look like."""
    rng = np.random.default_rng(rng_seed)
    base_p = 0.3 + rng.normal(0, noise, size=(seeds, 1))
    difficulty = rng.uniform(-0.2, 0.2, size=(1, images))  # shared: the pairing's use
    u = rng.uniform(size=(seeds, images))
    baseline = u < base_p + difficulty
    better = rng.uniform(size=(seeds, images)) < base_p + difficulty + gain
    return better, baseline


def test_a_gain_below_its_noise_is_not_significant_and_one_above_it_is():
    """The sweep's marks and the demo's verdicts rest on this: a 1-point gain on 3 seeds of 1,000
    images with seeds 3 points apart is noise; 12 points is not."""
    small, base = noisy_pairs(0.01, seeds=3, images=1000, noise=0.03, rng_seed=1)
    test = paired_bootstrap(small, base, resamples=4000)
    assert not significant(test)
    assert "not significant at this budget" in verdict(test)
    assert test["ci"][0] < 0 < test["ci"][1]
    large, base = noisy_pairs(0.12, seeds=3, images=1000, noise=0.03, rng_seed=2)
    test = paired_bootstrap(large, base, resamples=4000)
    assert significant(test) and test["ci"][0] > 0
    assert "higher" in verdict(test)


def test_the_bootstrap_difference_is_the_mean_paired_difference_and_its_seed_spread():
    a = np.array([[1, 1, 0, 1], [1, 0, 0, 1]], dtype=bool)
    b = np.array([[0, 1, 0, 1], [1, 0, 0, 0]], dtype=bool)
    test = paired_bootstrap(a, b, resamples=200)
    assert test["difference"] == pytest.approx(25.0)  # points: one image of 4 in each seed
    assert test["per_seed"] == [25.0, 25.0] and test["seed_sd"] == 0.0
    assert test["seeds"] == 2
    # The same draws from the same seed: a report repeats exactly.
    assert paired_bootstrap(a, b, resamples=200) == test
    with pytest.raises(PairingError, match="same seeds"):
        paired_bootstrap(a, b[:1])


def test_the_metric_bootstrap_equals_the_accuracy_bootstrap_for_a_mean_over_images():
    """A weighted accuracy through the generic path must give the same observed difference, and
    an interval of the same size, as the accuracy bootstrap."""
    better, base = noisy_pairs(0.05, seeds=2, images=400, noise=0.01, rng_seed=3)

    def weighted(correct):
        return lambda w: 100 * float(np.sum(w * correct) / np.sum(w))

    generic = paired_bootstrap_metric(
        [weighted(r) for r in better], [weighted(r) for r in base], images=400, resamples=600
    )
    direct = paired_bootstrap(better, base, resamples=600)
    assert generic["difference"] == pytest.approx(direct["difference"])
    width = lambda t: t["ci"][1] - t["ci"][0]  # noqa: E731
    assert width(generic) == pytest.approx(width(direct), rel=0.3)


def test_spearman_matches_pearson_on_ranks_and_its_interval_widens_with_few_points():
    x = [0.5, 0.65, 1.08, 1.61, 2.07, 2.49]
    y = [34.6, 35.3, 35.9, 37.8, 38.4, 36.5]
    result = spearman(x, y)
    # Ranks of y: 1 2 3 5 6 4; d^2 = 0+0+0+1+1+4 = 6; rho = 1 - 6 * 6 / (6 * 35).
    assert result["rho"] == pytest.approx(1 - 6 * 6 / (6 * 35))
    z, se = math.atanh(result["rho"]), math.sqrt((1 + result["rho"] ** 2 / 2) / 3)
    assert result["ci"] == pytest.approx((math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se)))
    assert result["ci"][0] < 0.3  # six points cannot pin a correlation down
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4])["rho"] == pytest.approx(
        np.corrcoef([1, 2.5, 2.5, 4], [1, 3, 2, 4])[0, 1]
    )  # ties: mean ranks
    assert spearman([1, 2, 3], [3, 2, 1])["ci"] is None  # too few points for an interval


def test_paired_t_matches_students_closed_forms():
    """At 2 degrees of freedom P(T > t) = 1/2 - t / (2 sqrt(2 + t^2)); at 1, arctan's."""
    from pretrain.evaluation.paired_tests import paired_t

    test = paired_t([1.0, 2.0, 3.0])  # mean 2, SE 1 / sqrt(3): t = 2 sqrt(3)
    t = 2 * 3**0.5
    assert test["p"] == pytest.approx(1 - t / (2 + t * t) ** 0.5, abs=1e-9)
    half = 4.302652729911275 / 3**0.5  # t(0.975, 2)
    assert test["ci"] == pytest.approx((2 - half, 2 + half), abs=1e-6)
    two = paired_t([1.0, 3.0])  # t = 2 at 1 degree of freedom
    assert two["p"] == pytest.approx(1 - 2 / math.pi * math.atan(2.0), abs=1e-9)
    with pytest.raises(PairingError):
        paired_t([1.0])
