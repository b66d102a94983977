"""Contrastive Multiview Coding with momentum encoders (Tian, Krishnan, Isola 2019, the MoCo-style
variant InfoMin uses): two views (channel groups of one image, e.g. L and ab), one encoder each.

Each view is a MoCo branch of moco.py: a query encoder whose first conv takes that view's channels,
its momentum key encoder (with the same shuffle-BN) and a queue of that key encoder's embeddings.
The views are contrasted across, both ways:
    loss = L(q1 vs k2, queue 2) + L(q2 vs k1, queue 1),
each L MoCo's InfoNCE (pretrain/losses.py). Both queues are read before either is written.
`state_dict()` holds both branches (`view1.*`, `view2.*`: encoders, queues, pointers)."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ..common import distributed as du
from ..common.errors import ConfigError
from ..losses import info_nce
from .method import VIEWS_CHANNEL_GROUPS, Method, StepOutput
from .moco import MoCo, build_moco


class CMCConfigError(ConfigError):
    """A MODEL.CMC / MODEL / EVAL setting CMC cannot run with."""


def replace_first_conv(backbone: nn.Module, in_channels: int) -> None:
    """torchvision's `conv1` rebuilt for `in_channels` inputs (same shape otherwise), initialised
    as torchvision initialises it (Kaiming normal, fan-out)."""
    old = getattr(backbone, "conv1", None)
    if not isinstance(old, nn.Conv2d):
        raise CMCConfigError(f"MODEL.CMC: the backbone's conv1 is a {type(old).__name__}, not the "
                             "Conv2d that CMC rebuilds for its view's channels")
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                    old.dilation, old.groups, old.bias is not None)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    backbone.conv1 = new.to(old.weight.dtype)


class CMC(Method):
    """MODEL.METHOD moco with MODEL.CMC.ENABLED (registered as moco: MoCo.from_cfg builds it).
    The loss sums two InfoNCE terms, "1->2" and "2->1"; the log's I_NCE is from their mean, per
    direction, comparable with MoCo's (InfoMin Fig. 4)."""
    views = VIEWS_CHANNEL_GROUPS
    info_nce_terms = ("1->2", "2->1")
    paper_head = None

    def __init__(self, view1: MoCo, view2: MoCo):
        super().__init__()
        if view1.queue_size != view2.queue_size or view1.batch_negatives != view2.batch_negatives:
            raise CMCConfigError("CMC: both views need the same queue size and negatives")
        self.view1 = view1
        self.view2 = view2

    @classmethod
    def check_cfg(cls, cfg) -> None:
        if cfg.MODEL.JIGSAW.ENABLED:
            raise CMCConfigError("MODEL.CMC.ENABLED and MODEL.JIGSAW.ENABLED: CMC has no JigSaw "
                                 "branch; turn one off")
        if cfg.EVAL.KNN_PERIOD and cfg.EVAL.KNN_FEATURES == "embedding":
            raise CMCConfigError("EVAL.KNN_FEATURES embedding with MODEL.CMC.ENABLED: CMC has "
                                 "one embedding per view; the kNN monitor reads both backbones "
                                 "(EVAL.KNN_FEATURES backbone)")

    @property
    def queue_size(self) -> int:
        return self.view1.queue_size

    def num_negatives(self, global_batch_size: int) -> int:
        """Negatives per query (each direction contrasts against one queue)."""
        return self.view1.num_negatives(global_batch_size)

    @torch.no_grad()
    def momentum_update(self) -> None:
        self.view1.momentum_update()
        self.view2.momentum_update()

    def after_optimizer_step(self) -> None:
        self.momentum_update()

    def readout_backbone(self, cfg) -> nn.Module:
        """Both query backbones as one feature extractor of RGB images (CMCReadoutBackbone)."""
        learned = _learned_views(cfg)  # one load serves the split and the readout
        return CMCReadoutBackbone(self, cfg.DATA.COLOR_SPACE or "rgb", _split(cfg, learned),
                                  learned)

    def encode_keys(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("CMC's keys are per view: the probes score CrossViewPair "
                                  "(evaluation/mutual_info.py)")

    @staticmethod
    def _contrast(queries, keys, all_keys, negatives, branch: MoCo):
        """InfoNCE of `queries` against the other view's keys and queue (`branch` holds them)."""
        batch = dict(batch_keys=all_keys, offset=du.get_rank() * len(keys)) \
            if branch.batch_negatives else {}
        return info_nce(queries, keys, negatives, branch.temperature, **batch)

    def forward(self, view1_images: torch.Tensor, view2_images: torch.Tensor):
        """The loss, logits of both directions stacked along the batch, and the two directions'
        terms. The keys are enqueued after the loss used the queues; `after_optimizer_step()`
        moves the key encoders."""
        q1 = self.view1.query_encoder(view1_images)
        q2 = self.view2.query_encoder(view2_images)
        k1 = self.view1.encode_keys(view1_images)  # shuffle-BN draws: view 1's, then view 2's
        k2 = self.view2.encode_keys(view2_images)
        all_k1, all_k2 = du.all_gather_cat(k1), du.all_gather_cat(k2)
        loss12, logits12 = self._contrast(q1, k2, all_k2, self.view2.queue.clone(), self.view2)
        loss21, logits21 = self._contrast(q2, k1, all_k1, self.view1.queue.clone(), self.view1)
        self.view1.enqueue(all_k1)
        self.view2.enqueue(all_k2)
        return StepOutput(loss12 + loss21, torch.cat([logits12, logits21]),
                          {"1->2": loss12.detach(), "2->1": loss21.detach()})


def _view_branch(cfg, in_channels: int) -> MoCo:
    """A MoCo branch of the config whose encoders read `in_channels` channels: built by
    build_moco, conv1 rebuilt in the query encoder and copied to the key encoder."""
    branch = build_moco(cfg)
    replace_first_conv(branch.query_encoder.backbone, in_channels)
    branch.key_encoder.backbone.conv1 = copy.deepcopy(branch.query_encoder.backbone.conv1)
    branch.key_encoder.backbone.conv1.requires_grad_(False)
    return branch


def build_cmc(cfg) -> CMC:
    CMC.check_cfg(cfg)
    k1, k2 = _split(cfg, _learned_views(cfg))
    return CMC(_view_branch(cfg, k1), _view_branch(cfg, k2))


def _learned_views(cfg):
    """The frozen generator of DATA.COLOR_SPACE learned (loaded and checked), else None."""
    from ..views_learned.views import LEARNED_SPACE, learned_views_of

    return learned_views_of(cfg) if cfg.DATA.COLOR_SPACE == LEARNED_SPACE else None


def _split(cfg, learned=None) -> tuple[int, int]:
    """(k1, k2) of DATA.CHANNEL_SPLIT, checked against the colour space, or the generator's split
    with `learned` (_learned_views)."""
    from ..data.color_spaces import check_split

    if learned is not None:
        return learned.split, learned.generator.channels - learned.split
    return check_split(cfg.DATA.COLOR_SPACE or "rgb", cfg.DATA.CHANNEL_SPLIT)


class CMCReadoutBackbone(nn.Module):
    """Both query backbones of a CMC model as one feature extractor for the readouts (kNN,
    linear), as CMC evaluates (Tian et al. 2019, Sec. 4.1): an ImageNet-normalised RGB batch is
    taken back to [0, 1], converted to the model's colour space and normalised as in training,
    split, each part encoded by its view's backbone, and the two features concatenated."""

    def __init__(self, model: CMC, space: str, split: tuple[int, int], learned=None):
        super().__init__()
        self.view1 = model.view1.query_encoder.backbone
        self.view2 = model.view2.query_encoder.backbone
        self.space, self.split = space, split
        # With learned views: the frozen generator (a module of its own, moved with this one).
        self.generator = learned.generator if learned is not None else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from ..data.color_spaces import denormalize, normalize, split_channels, to_space
        from ..data.views import IMAGENET_MEAN, IMAGENET_STD

        if self.generator is not None:  # g reads the ImageNet-normalised images as they are
            with torch.no_grad():
                first, second = split_channels(self.generator(images), self.split)
            return torch.cat([self.view1(first), self.view2(second)], dim=1)
        rgb = denormalize(images, IMAGENET_MEAN, IMAGENET_STD).clamp(0, 1)
        first, second = split_channels(normalize(to_space(rgb, self.space), self.space),
                                       self.split)
        return torch.cat([self.view1(first), self.view2(second)], dim=1)


class CrossViewPair(nn.Module):
    """One direction of a CMC model shaped like a MoCo model for the fresh-key probes
    (evaluation/fresh_keys.py): queries from one view's query encoder, keys from the other view's
    key encoder, no queue."""
    queue_size = 0

    def __init__(self, query_branch: MoCo, key_branch: MoCo):
        super().__init__()
        self.query_encoder = query_branch.query_encoder
        self.key_branch = key_branch
        self.temperature = key_branch.temperature

    def encode_keys(self, images: torch.Tensor) -> torch.Tensor:
        return self.key_branch.encode_keys(images)


