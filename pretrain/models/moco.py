"""Momentum contrast: query encoder, EMA key encoder, queue of negatives, InfoNCE (He et al. 2020).

The model holds everything a resumed run needs besides the optimizer: both encoders and the queue
with its write pointer, all in `state_dict()`."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..engine import distributed as du
from ..losses import info_nce
from .backbone import build_backbone
from .heads import build_head


class Encoder(nn.Module):
    """Backbone + projection head; `backbone` keeps torchvision's parameter names."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone(images)), dim=1)


class MoCo(nn.Module):
    def __init__(self, query_encoder: Encoder, feat_dim: int, queue_size: int, momentum: float,
                 temperature: float, shuffle_bn: bool = True):
        super().__init__()
        self.query_encoder = query_encoder
        self.key_encoder = copy.deepcopy(query_encoder)
        for p in self.key_encoder.parameters():
            p.requires_grad_(False)
        self.momentum = momentum
        self.temperature = temperature
        self.shuffle_bn = shuffle_bn
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, feat_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def queue_size(self) -> int:
        return self.queue.shape[0]

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_k <- m * theta_k + (1 - m) * theta_q, parameters only: the key encoder's BN keeps
        its own running statistics, computed in train mode on the key views."""
        q_params = list(self.query_encoder.parameters())
        k_params = list(self.key_encoder.parameters())
        torch._foreach_mul_(k_params, self.momentum)
        torch._foreach_add_(k_params, q_params, alpha=1.0 - self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write the keys of every process over the oldest entries, wrapping around."""
        keys = du.all_gather_cat(keys)
        slots = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % self.queue_size
        self.queue[slots] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % self.queue_size)

    @torch.no_grad()
    def encode_keys(self, images: torch.Tensor) -> torch.Tensor:
        """Key embeddings with shuffle-BN: the global key batch is permuted across processes so
        each process's BN statistics come from other samples than its queries' (MoCo, Sec. 3.3)."""
        if not (self.shuffle_bn and du.is_distributed()):
            return self.key_encoder(images)
        everything = du.all_gather_cat(images)
        order = du.broadcast_(torch.randperm(len(everything), device=images.device))
        mine = order.view(du.get_world_size(), -1)[du.get_rank()]
        keys = du.all_gather_cat(self.key_encoder(everything[mine]))
        restore = torch.argsort(order)
        return keys[restore].view(du.get_world_size(), -1, keys.shape[1])[du.get_rank()]

    def forward(self, query_images: torch.Tensor, key_images: torch.Tensor):
        """Returns (loss, logits). Call `momentum_update()` after the optimizer step and the keys
        are enqueued here, after the loss used the queue as it was."""
        queries = self.query_encoder(query_images)
        keys = self.encode_keys(key_images)
        loss, logits = info_nce(queries, keys, self.queue.clone(), self.temperature)
        self.enqueue(keys)
        return loss, logits


def build_moco(cfg) -> MoCo:
    backbone, dim = build_backbone(cfg.MODEL.ARCH)
    head = build_head(cfg.MODEL.HEAD, dim, cfg.MODEL.HEAD_HIDDEN_DIM, cfg.MODEL.FEAT_DIM)
    return MoCo(Encoder(backbone, head), cfg.MODEL.FEAT_DIM, cfg.MODEL.QUEUE_SIZE, cfg.MODEL.MOMENTUM,
                cfg.MODEL.TEMPERATURE, cfg.MODEL.SHUFFLE_BN)
