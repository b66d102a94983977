"""Paired tests for comparing two backbones on one shared test set, over seeds.

A readout figure moves with the pretraining seed, the readout's own draws and which test images
happen to be hard: one figure per side cannot rank two backbones a few points apart (on CIFAR-10
at 200 steps random init alone spans 22-29% kNN over four init seeds). Both sides are therefore
measured over the same seeds (seed s of one side paired with seed s of the other: pretraining
starts from the random init of its seed) on the same test images, and the difference is tested
pairwise:

  mcnemar           exact McNemar test of one pair of classifiers, image by image;
  paired_bootstrap  the mean difference in accuracy over seeds and images, with a percentile
                    interval and a two-sided p from resampling seeds and images together
                    (a two-level bootstrap: seeds for what varies between runs, images for the
                    test set);
  paired_bootstrap_metric  the same for a metric that is not a mean over images (COCO AP):
                    each run's metric is recomputed from image weights (detection/ap_bootstrap.py);
  spearman          rank correlation with the Bonett-Wright interval (Fisher z);
  paired_t          Student's t over per-seed differences of a per-run figure that has no
                    per-image breakdown (an entropy, a loss at the end of a run);
  verdict           the words a report uses: "significant" only where the test says so.

Everything is numpy and deterministic given `seed`; the observed differences do not depend on the
order of the images (the bootstrap draws, being indexed by position, vary with it within their
Monte-Carlo error).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

ALPHA = 0.05  # two-sided level of every verdict
RESAMPLES = 10_000


class PairingError(ValueError):
    """Two sides that cannot be paired (different seeds or test images)."""


def _as_matrix(correct, name: str) -> np.ndarray:
    """[seeds, images] booleans/floats from a 1-D (one seed) or 2-D array."""
    array = np.asarray(correct, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.size == 0:
        raise PairingError(f"{name}: expected per-image scores of shape [seeds, images]")
    return array


def correct_per_image(result: dict) -> np.ndarray:
    """Which test images a readout result ({"predictions", "labels"}, as knn_evaluate returns
    and sweeps and the demo keep) got right."""
    return np.asarray(result["predictions"]) == np.asarray(result["labels"])


def _binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p of k or fewer (or as many more) successes in n fair coin flips."""
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def mcnemar(correct_a, correct_b) -> dict:
    """Exact McNemar test of two classifiers on the same images: only the images on which they
    disagree count. Returns {"a_only", "b_only" (images only that side gets right), "p"}."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise PairingError(
            f"McNemar needs two per-image vectors of one length, got {a.shape} and {b.shape}"
        )
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    return {
        "a_only": a_only,
        "b_only": b_only,
        "p": _binomial_two_sided(min(a_only, b_only), a_only + b_only),
    }


def _resample_weights(rng, count: int, resamples: int) -> np.ndarray:
    """[resamples, count] multiplicities of a bootstrap draw of `count` items with replacement."""
    return rng.multinomial(count, np.full(count, 1.0 / count), size=resamples).astype(np.float64)


def _summary(observed: float, draws: np.ndarray, seeds: int, per_seed: np.ndarray) -> dict:
    low, high = np.percentile(draws, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    # Two-sided p of the percentile bootstrap: twice the share of draws on the far side of 0
    # (+1 in both counts, so no p is ever exactly 0 from finitely many draws).
    below = (np.sum(draws <= 0) + 1) / (len(draws) + 1)
    above = (np.sum(draws >= 0) + 1) / (len(draws) + 1)
    return {
        "difference": float(observed),
        "ci": (float(low), float(high)),
        "p": float(min(1.0, 2 * min(below, above))),
        "seeds": seeds,
        "per_seed": [float(v) for v in per_seed],
        "seed_sd": float(np.std(per_seed, ddof=1)) if seeds > 1 else None,
    }


def paired_bootstrap(correct_a, correct_b, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Accuracy of A minus accuracy of B (points, %), paired by seed (row) and image (column).
    Each draw resamples the seeds and the images with replacement, the same draw for both sides.
    Returns {"difference", "ci" (95%), "p" (two-sided), "seeds", "per_seed", "seed_sd"}."""
    a, b = _as_matrix(correct_a, "A"), _as_matrix(correct_b, "B")
    if a.shape != b.shape:
        raise PairingError(
            f"A has {a.shape[0]} seeds x {a.shape[1]} images, B {b.shape[0]} x "
            f"{b.shape[1]}: pair them on the same seeds and test images"
        )
    diff = 100 * (a - b)  # [seeds, images]
    seeds, images = diff.shape
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for start in range(0, resamples, 1000):  # 1,000 draws at a time bound the memory
        count = min(1000, resamples - start)
        seed_w = _resample_weights(rng, seeds, count) / seeds
        image_w = _resample_weights(rng, images, count) / images
        draws[start : start + count] = np.einsum("rs,si,ri->r", seed_w, diff, image_w)
    return _summary(diff.mean(), draws, seeds, diff.mean(axis=1))


def paired_bootstrap_metric(
    metric_a: Sequence[Callable[[np.ndarray], float]],
    metric_b: Sequence[Callable[[np.ndarray], float]],
    images: int,
    resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """As paired_bootstrap for a metric that is not a mean over images: metric_a[s](w) is run s
    of side A's metric on the test set with image weights w (w = 1 everywhere: the set itself),
    paired with metric_b[s]. Each draw resamples seeds and images, the same for both sides."""
    if len(metric_a) != len(metric_b) or not metric_a:
        raise PairingError(
            f"{len(metric_a)} runs of A and {len(metric_b)} of B: pair them on the same seeds"
        )
    seeds = len(metric_a)
    ones = np.ones(images)
    per_seed = np.array([fa(ones) - fb(ones) for fa, fb in zip(metric_a, metric_b)])
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for r in range(resamples):
        chosen = rng.integers(0, seeds, size=seeds)
        weights = rng.multinomial(images, np.full(images, 1.0 / images)).astype(np.float64)
        difference = {s: metric_a[s](weights) - metric_b[s](weights) for s in set(chosen)}
        draws[r] = np.mean([difference[s] for s in chosen])
    return _summary(per_seed.mean(), draws, seeds, per_seed)


def _ranks(values) -> np.ndarray:
    """Ranks from 1, ties given their mean rank."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x, y) -> dict:
    """Spearman's rho of paired values, with a 95% interval by Fisher's z and the Bonett-Wright
    standard error sqrt((1 + rho^2 / 2) / (n - 3)) (defined from n = 4). Returns {"rho", "ci",
    "n"}; ci is None below 4 points or where rho is +-1 (the transform diverges)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise PairingError(
            f"Spearman needs two vectors of one length >= 2, got {x.shape}, {y.shape}"
        )
    rx, ry = _ranks(x), _ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return {"rho": float("nan"), "ci": None, "n": len(x)}
    rho = float(np.corrcoef(rx, ry)[0, 1])
    n = len(x)
    if n < 4 or abs(rho) >= 1:
        return {"rho": rho, "ci": None, "n": n}
    z, se = math.atanh(rho), math.sqrt((1 + rho**2 / 2) / (n - 3))
    return {"rho": rho, "ci": (math.tanh(z - 1.96 * se), math.tanh(z + 1.96 * se)), "n": n}


def _t_cdf_upper(t: float, dof: int) -> float:
    """P(T > t) for Student's t with `dof` degrees of freedom, t >= 0: the density integrated
    numerically from 0 to t (Simpson, 20,000 intervals; within 1e-9 of the closed forms)."""
    log_c = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    x = np.linspace(0.0, t, 20_001)
    density = np.exp(log_c - (dof + 1) / 2 * np.log1p(x * x / dof))
    h = t / 20_000
    integral = (
        h / 3 * (density[0] + density[-1] + 4 * density[1:-1:2].sum() + 2 * density[2:-1:2].sum())
    )
    return max(0.0, 0.5 - integral)


def _t_quantile(q: float, dof: int) -> float:
    """The t with P(T > t) = 1 - q (q > 0.5), by bisection."""
    low, high = 0.0, 1e3
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_cdf_upper(mid, dof) > 1 - q else (low, mid)
    return (low + high) / 2


def paired_t(differences: Sequence[float]) -> dict:
    """Student's paired t over per-seed differences (A - B of seed s each): {"difference" (the
    mean), "ci" (95%), "p" (two-sided), "seeds"}. Needs two seeds or more; the interval is
    wide at few seeds (t at 2 degrees of freedom is 4.30), as it should be."""
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1 or len(d) < 2:
        raise PairingError(f"a paired t needs differences from 2 seeds or more, got {d.shape}")
    mean, se, dof = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(len(d)), len(d) - 1
    if se == 0:
        return {"difference": mean, "ci": (mean, mean), "p": 0.0 if mean else 1.0, "seeds": len(d)}
    half = _t_quantile(0.975, dof) * se
    p = 2 * _t_cdf_upper(abs(mean) / se, dof)
    return {"difference": mean, "ci": (mean - half, mean + half), "p": p, "seeds": len(d)}


def significant(test: dict, alpha: float = ALPHA) -> bool:
    return test["p"] < alpha


def verdict(test: dict, unit: str = " points", alpha: float = ALPHA) -> str:
    """One clause for a report: the difference, its interval and p, and what that allows."""
    low, high = test["ci"]
    words = (
        ("higher" if test["difference"] > 0 else "lower")
        if significant(test, alpha)
        else "not significant at this budget"
    )
    return (
        f"{test['difference']:+.1f}{unit} (95% CI {low:+.1f} to {high:+.1f}, p = "
        f"{test['p']:.3g}, {test['seeds']} seed{'s' if test['seeds'] != 1 else ''}): {words}"
    )
