"""InfoNCE against a queue of negatives (van den Oord et al. 2018; He et al., MoCo, 2020)."""
from __future__ import annotations

import functools
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
    # The similarities in at least float32 even inside a bf16/fp16 autocast region: near cosine 1
    # bf16 steps by 2^-8, i.e. ~0.026 in a logit at T = 0.15, about the gap between a positive and
    # the hardest negatives. The casts are differentiable, so the query still gets its gradient.
    with torch.autocast(device_type=query.device.type, enabled=False):
        dtype = _similarity_dtype(query, key, queue, *([] if batch_keys is None else [batch_keys]))
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


def _similarity_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The tensors' common dtype, float32 where they are half precision (float64 is kept)."""
    return functools.reduce(torch.promote_types, (t.dtype for t in tensors), torch.float32)


def mutual_information_bound(loss: float, num_negatives: int) -> float:
    """I_NCE = log(K + 1) - L: the InfoNCE lower bound on the views' mutual information (nats)."""
    return math.log(num_negatives + 1) - loss
