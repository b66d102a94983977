"""Momentum contrast: query encoder, EMA key encoder, queue of negatives, InfoNCE (He et al. 2020).

The model holds everything a resumed run needs besides the optimizer: both encoders and the queue
with its write pointer, all in `state_dict()`."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..common import distributed as du
from ..common.errors import ConfigError
from ..losses import info_nce
from .backbone import backbone_of_cfg
from .ema import ema_update, frozen_copy
from .heads import head_of_cfg
from ..entropy_reconstruction import SPHERE, ERPair
from .method import VIEWS_PAIR_JIGSAW, Method, StepOutput, register_method
from .split_bn import bn_splits, convert_to_split_bn


class Encoder(nn.Module):
    """Backbone + projection head; `backbone` keeps torchvision's parameter names."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    @classmethod
    def from_cfg(cls, cfg) -> "Encoder":
        """MODEL.ARCH / WIDTH / STEM's backbone with MODEL.HEAD's projection head."""
        backbone, dim = backbone_of_cfg(cfg)
        return cls(backbone, head_of_cfg(cfg, dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone(images)), dim=1)


class JigsawHead(nn.Module):
    """PIRL's jigsaw embedding (PyContrast's `head_jig`): every patch's backbone feature goes
    through one MLP shared by all patches, the patches of each image are put in a random order,
    concatenated and projected to one L2-normalised vector per image."""

    def __init__(self, patch_head: nn.Module, num_patches: int, feat_dim: int):
        super().__init__()
        self.patch_head = patch_head
        self.fc = nn.Linear(num_patches * feat_dim, feat_dim)

    def forward(
        self, patch_features: torch.Tensor, num_images: int, order: torch.Tensor | None = None
    ) -> torch.Tensor:
        """patch_features: (num_images * P, C), image-major; `order`: (num_images, P) each
        image's patch order (PIRL draws it for the global batch), else drawn here. Returns
        (num_images, feat_dim)."""
        embedded = self.patch_head(patch_features).view(num_images, -1, self.fc.out_features)
        if order is None:
            order = torch.rand(embedded.shape[:2], device=embedded.device).argsort(dim=1)
        shuffled = embedded.gather(1, order.unsqueeze(-1).expand_as(embedded))
        return F.normalize(self.fc(shuffled.flatten(1)), dim=1)


@register_method("moco")
class MoCo(Method):
    """MoCo v1 / v2 and InfoMin (JigSaw with MODEL.JIGSAW.ENABLED); with MODEL.CMC.ENABLED the
    config builds CMC (cmc.py), one MoCo branch per channel group."""

    views = VIEWS_PAIR_JIGSAW
    info_nce_terms = ("instance",)
    paper_head = None  # MoCo v1's linear, v2's mlp, InfoMin's: MODEL.HEAD picks the paper

    def __init__(
        self,
        query_encoder: Encoder,
        feat_dim: int,
        queue_size: int,
        momentum: float,
        temperature: float,
        shuffle_bn: bool = True,
        jigsaw_head: JigsawHead | None = None,
        jigsaw_weight: float = 0.5,
        bn_splits: int = 1,
        batch_negatives: bool = False,
    ):
        """`bn_splits` > 1: the encoders' BN layers are SplitBatchNorm2d with that many groups per
        process, and keys are shuffled before the key encoder even in a one-process run."""
        super().__init__()
        self.bn_splits = bn_splits
        self.query_encoder = query_encoder
        self.jigsaw_head = jigsaw_head  # query side only: keys never come from patches
        self.jigsaw_weight = jigsaw_weight
        self.key_encoder = frozen_copy(query_encoder)
        self.momentum = momentum
        self.temperature = temperature
        self.shuffle_bn = shuffle_bn
        self.batch_negatives = batch_negatives
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, feat_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def queue_size(self) -> int:
        return self.queue.shape[0]

    @classmethod
    def check_cfg(cls, cfg) -> None:
        super().check_cfg(cfg)
        if cfg.MODEL.CMC.ENABLED:
            from .cmc import CMC

            CMC.check_cfg(cfg)

    @classmethod
    def from_cfg(cls, cfg) -> "Method":
        if cfg.MODEL.CMC.ENABLED:
            from .cmc import build_cmc

            return build_cmc(cfg)
        return build_moco(cfg)

    def after_optimizer_step(self) -> None:
        self.momentum_update()

    def num_negatives(self, global_batch_size: int) -> int:
        """Negatives per query: the queue, plus the batch's other keys with batch negatives."""
        return self.queue_size + (global_batch_size - 1 if self.batch_negatives else 0)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_k <- m * theta_k + (1 - m) * theta_q (ema.py)."""
        ema_update(self.key_encoder, self.query_encoder, self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write the keys of every process (already gathered) over the oldest entries, wrapping
        around. An empty queue (in-batch negatives only, as in MoCo v3) keeps nothing."""
        if self.queue_size == 0:
            return
        slots = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % self.queue_size
        self.queue[slots] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % self.queue_size)

    @torch.no_grad()
    def encode_keys(self, images: torch.Tensor) -> torch.Tensor:
        """Key embeddings with shuffle-BN (MoCo, Sec. 3.3): the key batch is permuted before the key
        encoder, so a key's BN statistics come from other images than its query's. Across
        processes when distributed; within one, over the BN groups of SplitBatchNorm2d."""
        if not self.shuffle_bn or (self.bn_splits == 1 and not du.is_distributed()):
            return self.key_encoder(images)
        # In one process the collectives below are identities: the same permutation, local.
        everything = du.all_gather_cat(images)
        order = du.broadcast_(torch.randperm(len(everything), device=images.device))
        mine = order.view(du.get_world_size(), -1)[du.get_rank()]
        keys = du.all_gather_cat(self.key_encoder(everything[mine]))
        restore = torch.argsort(order)
        return keys[restore].view(du.get_world_size(), -1, keys.shape[1])[du.get_rank()]

    def forward(
        self,
        query_images: torch.Tensor,
        key_images: torch.Tensor,
        jigsaw_patches: torch.Tensor | None = None,
    ):
        """The loss, logits of the instance branch, and its terms "instance" (and "jigsaw").
        With jigsaw patches (N, P, C, H, W), the loss is (1 - w) * L_instance + w * L_jigsaw,
        both against the same keys and queue. The keys are enqueued here, after the loss used
        the queue as it was; `after_optimizer_step()` moves the key encoder."""
        queries = self.query_encoder(query_images)
        keys = self.encode_keys(key_images)
        negatives = self.queue.clone()
        all_keys = du.all_gather_cat(keys)
        batch = (
            dict(batch_keys=all_keys, offset=du.get_rank() * len(keys))
            if self.batch_negatives
            else {}
        )
        loss, logits = info_nce(queries, keys, negatives, self.temperature, **batch)
        terms = {"instance": loss.detach()}
        if jigsaw_patches is not None:
            features = self.query_encoder.backbone(jigsaw_patches.flatten(0, 1))
            jigsaw = self.jigsaw_head(features, num_images=len(jigsaw_patches))
            jigsaw_loss, _ = info_nce(jigsaw, keys, negatives, self.temperature, **batch)
            terms["jigsaw"] = jigsaw_loss.detach()
            loss = (1 - self.jigsaw_weight) * loss + self.jigsaw_weight * jigsaw_loss
        self.enqueue(all_keys)
        return StepOutput(loss, logits, terms, ERPair(SPHERE, queries.detach(), keys))


def build_moco(cfg) -> MoCo:
    m = cfg.MODEL
    backbone, dim = backbone_of_cfg(cfg)
    head = head_of_cfg(cfg, dim)
    jigsaw_head = None
    if m.JIGSAW.ENABLED:
        jigsaw_head = JigsawHead(head_of_cfg(cfg, dim), m.JIGSAW.GRID**2, m.FEAT_DIM)
    if m.QUEUE_SIZE == 0 and not m.BATCH_NEGATIVES:
        raise ConfigError(
            "MODEL.QUEUE_SIZE 0 leaves no negatives: set MODEL.BATCH_NEGATIVES True "
            "to contrast with the batch's other keys instead"
        )
    if m.SYNC_BN and m.SHUFFLE_BN and du.get_rank() == 0:
        print(
            "warning: MODEL.SYNC_BN replaces shuffle-BN, but against a queue it leaves a leak: "
            "the positive key is the only logit computed under the current key batch's BN "
            "statistics. Global BN suffices for in-batch negatives (SimCLR), not for MoCo's "
            "queue; keep SYNC_BN False for MoCo/InfoMin.",
            flush=True,
        )
    shuffle_bn = m.SHUFFLE_BN and not m.SYNC_BN  # global statistics leave nothing to shuffle
    splits = 1
    if shuffle_bn:
        world_size = du.get_world_size()
        splits = bn_splits(m.BN_SPLITS, cfg.SOLVER.BATCH_SIZE // world_size, world_size)
        backbone = convert_to_split_bn(backbone, splits)  # before the key encoder copies it
    return MoCo(
        Encoder(backbone, head),
        m.FEAT_DIM,
        m.QUEUE_SIZE,
        m.MOMENTUM,
        m.TEMPERATURE,
        shuffle_bn,
        jigsaw_head,
        m.JIGSAW.LOSS_WEIGHT,
        splits,
        m.BATCH_NEGATIVES,
    )
