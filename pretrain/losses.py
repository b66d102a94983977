"""InfoNCE against a queue of negatives (van den Oord et al. 2018; He et al., MoCo, 2020)."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


def info_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    queue: torch.Tensor,
    temperature: float,
    batch_keys: torch.Tensor | None = None,
    offset: int = 0,
):
    """Contrast each query with its own key (the positive) and every queued key (the negatives),
    and, with `batch_keys`, also with the keys of the other images in the batch.

    Args:
        query: (N, D) L2-normalised query embeddings.
        key: (N, D) L2-normalised positive keys; no gradient flows into them.
        queue: (K, D) L2-normalised negatives.
        temperature: softmax temperature T.
        batch_keys: (B, D) the keys of the whole (global) batch, this process's N at rows
            offset .. offset + N - 1; each query's own key among them is left out, since it is
            already the positive.
    Returns:
        (loss, logits): the mean cross-entropy with the positive at column 0, and the
        (N, 1 [+ B] + K) logits, already divided by T; a query's own key in the batch columns
        has logit -inf.
    """
    # The similarities in at least float32 even inside a bf16/fp16 autocast region: near cosine 1
    # bf16 steps by 2^-8, i.e. ~0.026 in a logit at T = 0.15, about the gap between a positive and
    # the hardest negatives. The casts are differentiable, so the query still gets its gradient.
    with torch.autocast(device_type=query.device.type, enabled=False):
        dtype = similarity_dtype(query, key, queue, *([] if batch_keys is None else [batch_keys]))
        query, key, queue = query.to(dtype), key.detach().to(dtype), queue.detach().to(dtype)
        positive = (query * key).sum(dim=1, keepdim=True)
        negatives = query @ queue.t()
        if batch_keys is not None:
            in_batch = query @ batch_keys.detach().to(dtype).t()
            own = torch.zeros_like(in_batch, dtype=torch.bool)
            own[torch.arange(len(query)), offset + torch.arange(len(query))] = True
            negatives = torch.cat([in_batch.masked_fill(own, float("-inf")), negatives], dim=1)
        logits = torch.cat([positive, negatives], dim=1) / temperature
        labels = torch.zeros(len(query), dtype=torch.long, device=query.device)
        return F.cross_entropy(logits, labels), logits


def similarity_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The tensors' common dtype, float32 where they are half precision (float64 is kept)."""
    return functools.reduce(torch.promote_types, (t.dtype for t in tensors), torch.float32)


def at_least_float32(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The tensors in their common dtype, float32 where that is half precision: exp(score / T),
    softmaxes and log-sum-exps (Sinkhorn, the ER estimators) need it under bf16 autocast."""
    dtype = similarity_dtype(*tensors)
    return [t.to(dtype) for t in tensors]


def mutual_information_bound(loss: float, num_negatives: int) -> float:
    """I_NCE = log(K + 1) - L: the InfoNCE lower bound on the views' mutual information (nats)."""
    return math.log(num_negatives + 1) - loss


def nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float,
    all_z1: torch.Tensor | None = None,
    all_z2: torch.Tensor | None = None,
    offset: int = 0,
):
    """SimCLR's NT-Xent (Chen et al. 2020, Eq. 1 and Algorithm 1): each of the 2N views is an
    anchor whose positive is the other view of its image and whose negatives are the 2B - 2 other
    views of the (global) batch of B images.

    Args:
        z1, z2: (N, D) L2-normalised embeddings of this process's first and second views.
        all_z1, all_z2: (B, D) those of the whole batch (gathered with their gradient), this
            process's at rows offset .. offset + N - 1; None: the batch is this process's.
    Returns:
        (loss, logits): the mean over this process's 2N anchors (first views, then second) of the
        cross-entropy with the positive at column 0, and the (2N, 1 + 2B) logits divided by T, in
        which the anchor itself and its positive (already at column 0) have logit -inf.
    """
    all_z1 = z1 if all_z1 is None else all_z1
    all_z2 = z2 if all_z2 is None else all_z2
    with torch.autocast(device_type=z1.device.type, enabled=False):  # as info_nce, for bf16
        dtype = similarity_dtype(z1, z2, all_z1, all_z2)
        n, b = len(z1), len(all_z1)
        anchors = torch.cat([z1, z2]).to(dtype)
        similarities = anchors @ torch.cat([all_z1, all_z2]).to(dtype).t()
        own = offset + torch.arange(n, device=z1.device)
        rows = torch.arange(2 * n, device=z1.device)
        itself, partner = torch.cat([own, own + b]), torch.cat([own + b, own])
        positive = similarities[rows, partner].unsqueeze(1)
        excluded = torch.zeros_like(similarities, dtype=torch.bool)
        excluded[rows, itself] = excluded[rows, partner] = True
        logits = (
            torch.cat([positive, similarities.masked_fill(excluded, float("-inf"))], dim=1)
            / temperature
        )
        labels = torch.zeros(2 * n, dtype=torch.long, device=z1.device)
        return F.cross_entropy(logits, labels), logits


def mean_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of each prediction with its target, no gradient into the target:
    SimSiam's D(p, z) = -mean_cosine(p, z) (Chen & He 2021, Eq. 1 with stop-gradient), BYOL's
    normalised squared error ||p/|p| - z/|z| ||^2 = 2 - 2 mean_cosine(p, z) (Grill et al. 2020,
    Eq. 2). In at least float32, as info_nce."""
    with torch.autocast(device_type=prediction.device.type, enabled=False):
        dtype = similarity_dtype(prediction, target)
        p = F.normalize(prediction.to(dtype), dim=1)
        z = F.normalize(target.detach().to(dtype), dim=1)
        return (p * z).sum(dim=1).mean()
