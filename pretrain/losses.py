"""InfoNCE against a queue of negatives (van den Oord et al. 2018; He et al., MoCo, 2020)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def info_nce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float,
             batch_keys: torch.Tensor | None = None, offset: int = 0):
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
    positive = (query * key.detach()).sum(dim=1, keepdim=True)
    negatives = query @ queue.detach().t()
    if batch_keys is not None:
        in_batch = query @ batch_keys.detach().t()
        own = torch.zeros_like(in_batch, dtype=torch.bool)
        own[torch.arange(len(query)), offset + torch.arange(len(query))] = True
        negatives = torch.cat([in_batch.masked_fill(own, float("-inf")), negatives], dim=1)
    logits = torch.cat([positive, negatives], dim=1) / temperature
    labels = torch.zeros(len(query), dtype=torch.long, device=query.device)
    return F.cross_entropy(logits.float(), labels), logits


def mutual_information_bound(loss: float, num_negatives: int) -> float:
    """I_NCE = log(K + 1) - L: the InfoNCE lower bound on the views' mutual information (nats)."""
    return math.log(num_negatives + 1) - loss
