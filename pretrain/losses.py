"""InfoNCE against a queue of negatives (van den Oord et al. 2018; He et al., MoCo, 2020)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def info_nce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float):
    """Contrast each query with its own key (the positive) and every queued key (the negatives).

    Args:
        query: (N, D) L2-normalised query embeddings.
        key: (N, D) L2-normalised positive keys; no gradient flows into them.
        queue: (K, D) L2-normalised negatives.
        temperature: softmax temperature T.
    Returns:
        (loss, logits): the mean cross-entropy with the positive at column 0, and the (N, 1 + K)
        logits, already divided by T.
    """
    positive = (query * key.detach()).sum(dim=1, keepdim=True)
    negatives = query @ queue.detach().t()
    logits = torch.cat([positive, negatives], dim=1) / temperature
    labels = torch.zeros(len(query), dtype=torch.long, device=query.device)
    return F.cross_entropy(logits.float(), labels), logits


def mutual_information_bound(loss: float, num_negatives: int) -> float:
    """I_NCE = log(K + 1) - L: the InfoNCE lower bound on the views' mutual information (nats)."""
    return math.log(num_negatives + 1) - loss
