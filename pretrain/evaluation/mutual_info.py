"""I_NCE of a trained model on held-out images: InfoMin's estimate of the information its two views
share (Tian et al. 2020, Sec. 3 and Fig. 5), measured after pretraining rather than read off the
training log.

Two views of each of N held-out images are made by the run's own view pipeline; every query is
scored against the N keys of the same pass (its own key the positive, the other N - 1 fresh keys
the negatives; fresh_keys.py), and I_NCE = log(N) - mean InfoNCE loss. The estimate is bounded
by log(N): N decides how much information it can show, so compare points measured with the same N.
As a lower bound it can also fall below 0 for views that share nothing (by about half the
variance of the logits), as random initialisation's can.
The training log's I_NCE is no substitute: it is taken against the queue, whose keys come from
older encoders and can be told from the positive by their age alone.

The estimate is order-free. The held-out images are a seeded random sample in a random order (in
folder order each batch would hold one or two classes), and batch norm runs in eval mode by
default: every embedding is then a fixed function of its own image, so the critic is fixed and
log N - InfoNCE a valid lower bound whatever the order. In train mode (bn="train", as the step
encodes) each embedding depends on its batch's statistics, and the estimate on how the images
are grouped (measured on CIFAR-10 crop-sweep checkpoints, 2026-12: 0.1-0.4 nats lower in folder
order than shuffled, and lower again than in eval mode: docs/results/views_sweeps_2026-12.md).
"""

from __future__ import annotations

import torch

from ..common.errors import DatasetError
from ..data.packed import open_images
from ..data.pipelines import ViewPipeline
from .fresh_keys import fresh_key_scores


class HeldoutError(DatasetError):
    """The held-out images cannot give the pairs the measurement needs."""


BN_MODES = ("eval", "train")


def heldout_views(cfg, images_root: str, n: int, order_seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(query views, key views) (for CMC, every channel group: one tensor per view) of n images
    of `images_root` drawn at random without replacement
    from `order_seed`, in that random order (not the first n, nor n in folder order: in class
    folders each batch would then hold one or two classes), n rounded down to whole batches of
    SOLVER.BATCH_SIZE, made by the config's views (epoch 0 of its seed, per image, so an image's
    views do not depend on where it lands) on the CPU. A JigSaw run's patches (its third view)
    are left out: the measurement is of the instance views."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATA.PIPELINE = "cpu"  # same views either way; the CPU pipeline needs no device
    pipeline = ViewPipeline(cfg, open_images(images_root), "cpu")
    samples = len(pipeline.dataset)  # images, or instances with DATA.VIEWS_FROM folder
    batch = cfg.SOLVER.BATCH_SIZE
    n = min(n, samples) // batch * batch
    if n < 2:
        raise HeldoutError(
            f"{images_root}: {samples} samples, fewer than one batch of "
            f"{batch} (SOLVER.BATCH_SIZE) to measure with"
        )
    chosen = torch.randperm(samples, generator=torch.Generator().manual_seed(order_seed))[:n]
    views, _ = pipeline.collate([pipeline.dataset[(0, i)] for i in chosen.tolist()])
    if cfg.MODEL.CMC.ENABLED:
        return tuple(views)  # every channel group
    return views[0], views[1]


def info_nce_estimate(
    model,
    query_views: torch.Tensor,
    key_views: torch.Tensor,
    batch_size: int,
    seed: int = 0,
    bn: str = "eval",
    kappa: float = 10.0,
) -> dict:
    """I_NCE (nats) of `model` on N view pairs, with what it was computed from:
      i_nce: log(N) - fresh-key InfoNCE loss; bound: log(N); loss, acc: that loss and its top-1;
      bn: the batch-norm mode it was encoded in;
      i_er, er_entropy, er_reconstruction: the entropy-reconstruction bound I_ER = H - Rec on
        the same pairs (vMF kernel of concentration `kappa`; H of the N keys, Rec of each key
        from its query), the measure of the ER paper for methods with or without negatives.
    Encoded in batches of `batch_size` (fresh_key_scores) with batch norm in `bn` mode: "eval"
    (the default: a fixed critic, independent of the order and grouping of the pairs) or "train"
    (the step's statistics; it moves the BN running statistics of `model`, so measure on a model
    that is not used afterwards). Shuffle-BN's permutations are drawn from `seed`, so a
    measurement repeats exactly; the caller's random state is left as it was."""
    if bn not in BN_MODES:
        raise ValueError(f"bn {bn!r}: expected one of {BN_MODES}")
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        scores = fresh_key_scores(
            model, query_views, key_views, batch_size, train_bn=bn == "train", kappa=kappa
        )
    return {
        "i_nce": scores["chance_loss"] - scores["fresh_loss"],
        "bound": scores["chance_loss"],
        "loss": scores["fresh_loss"],
        "acc": scores["fresh_acc"],
        "n": len(query_views),
        "bn": bn,
        "i_er": scores["er_entropy"] - scores["er_reconstruction"],
        "er_entropy": scores["er_entropy"],
        "er_reconstruction": scores["er_reconstruction"],
    }


def measure_info_nce(
    model, cfg, images_root: str, n: int, bn: str = "eval", order_seed: int = 0
) -> dict:
    """I_NCE of `model` (built from `cfg`) on two views of up to n images of `images_root` (a
    random sample in random order from `order_seed`), batch norm in `bn` mode. For CMC, between
    its colour-space views, each way, over the pairs it was trained on (view 1's queries against
    view 2's keys and back, InfoMin Fig. 4), averaged; each direction is also returned
    ("i_nce_12", "i_nce_21", ...)."""
    from ..models.cmc import CMC, CrossViewPair

    device = next(model.parameters()).device
    views = [v.to(device) for v in heldout_views(cfg, images_root, n, order_seed)]
    batch = cfg.SOLVER.BATCH_SIZE
    kappa = cfg.MODEL.ER.KAPPA
    if not isinstance(model, CMC):
        return info_nce_estimate(
            model, views[0], views[1], batch, seed=cfg.SEED, bn=bn, kappa=kappa
        )
    # Every direction of the pairs the model was trained on (its MODEL.CMC.GRAPH), averaged.
    branches, found = model.branches, {}
    for i, j in model.pairs:
        for a, b in ((i, j), (j, i)):
            found[f"{a + 1}{b + 1}"] = info_nce_estimate(
                CrossViewPair(branches[a], branches[b]),
                views[a],
                views[b],
                batch,
                seed=cfg.SEED,
                bn=bn,
                kappa=kappa,
            )
    first = next(iter(found.values()))
    mean = {
        key: sum(r[key] for r in found.values()) / len(found)
        for key in ("i_nce", "loss", "acc", "i_er", "er_entropy", "er_reconstruction")
    }
    return {**first, **mean, **{f"i_nce_{name}": r["i_nce"] for name, r in found.items()}}
