"""Instance discrimination against fresh keys: what the training log's contrastive accuracy cannot
tell apart from a shortcut.

The log scores each query against its positive and the queue. Queue entries were written by older
key encoders, so while the encoders still move quickly (early in training) the positive can be
told from the negatives by its age alone, and the log's accuracy rises with nothing learned about
the images. Here every query is scored instead against the keys of all the other probe images,
made by the same key encoder in the same pass: the positive must be found by content. The mean
cosine between the queries of different images shows collapse (1.0: one point for every image).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..common.errors import ConfigError
from ..entropy_reconstruction import SPHERE, entropy, reconstruction
from ..losses import info_nce


@torch.no_grad()
def fresh_key_scores(
    model,
    query_images: torch.Tensor,
    key_images: torch.Tensor,
    batch_size: int,
    train_bn: bool = True,
    kappa: float = 10.0,
) -> dict:
    """Score a MoCo model on N image pairs, run in chunks of `batch_size`, in train mode as in
    training (shuffle-BN included), or with `train_bn` False in eval mode (batch norm from its
    running statistics: each embedding a function of its own image alone). Returns:
      queue_loss, queue_acc: InfoNCE and top-1 against the positive and the stored queue (NaN
        for a model without one, MODEL.QUEUE_SIZE 0);
      fresh_loss, fresh_acc: the same against the N - 1 keys of the other images;
      chance_loss: log(N), the fresh loss of embeddings that carry no information;
      query_cosine: mean cosine between the queries of different images;
      er_entropy, er_reconstruction: the ER bound's H of the N keys and Rec of each key from its
        query (vMF kernel of concentration `kappa` on the sphere; entropy_reconstruction.py),
        so that I_ER = er_entropy - er_reconstruction, for any method."""
    n = len(query_images)
    if n < 2 or n % batch_size:
        raise ConfigError(
            f"{n} probe image pairs (--n): need at least 2, in whole batches of {batch_size}"
        )
    was_training = model.training
    model.train(train_bn)
    try:
        queries = torch.cat(
            [model.query_encoder(query_images[i : i + batch_size]) for i in range(0, n, batch_size)]
        ).float()
        keys = torch.cat(
            [model.encode_keys(key_images[i : i + batch_size]) for i in range(0, n, batch_size)]
        ).float()
    finally:
        model.train(was_training)
    if model.queue_size:
        loss, against_queue = info_nce(queries, keys, model.queue.float(), model.temperature)
        queue_loss = loss.item()
        queue_acc = (against_queue.argmax(dim=1) == 0).float().mean().item()
    else:  # in-batch negatives only: no queue to score against
        queue_loss = queue_acc = float("nan")
    against_fresh = queries @ keys.t() / model.temperature  # positives on the diagonal
    own = torch.arange(n, device=queries.device)  # on the model's device (a GPU's, in a sweep)
    cosine = queries @ queries.t()
    return {
        "queue_loss": queue_loss,
        "queue_acc": queue_acc,
        "fresh_loss": F.cross_entropy(against_fresh, own).item(),
        "fresh_acc": (against_fresh.argmax(dim=1) == own).float().mean().item(),
        "chance_loss": math.log(n),
        "query_cosine": ((cosine.sum() - cosine.diagonal().sum()) / (n * (n - 1))).item(),
        "er_entropy": entropy(keys.double(), SPHERE, kappa).item(),
        "er_reconstruction": reconstruction(queries.double(), keys.double(), SPHERE, kappa).item(),
    }
