"""Contrastive Multiview Coding with momentum encoders (Tian, Krishnan, Isola 2019, the MoCo-style
variant InfoMin uses): two or more views (channel groups of one image, e.g. L | ab, or L | a | b),
one encoder each.

Each view is a MoCo branch of moco.py: a query encoder whose first conv takes that view's channels,
its momentum key encoder (with the same shuffle-BN) and a queue of that key encoder's embeddings.
Views are contrasted across, both ways, over the pairs of a graph (CMC Sec. 3.3, MODEL.CMC.GRAPH):
    loss = sum over the graph's pairs (i, j) of L(qi vs kj, queue j) + L(qj vs ki, queue i),
each L MoCo's InfoNCE (pretrain/losses.py). "core": view 1 with each other view (L(V1, Vj),
j = 2..M); "full": every pair. With two views both are L(q1 vs k2) + L(q2 vs k1). Every queue is
read before any is written. `state_dict()` holds the branches as `view1.*`, `view2.*`, ...
(encoders, queues, pointers)."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ..common import distributed as du
from ..common.errors import ConfigError
from ..losses import info_nce
from ..entropy_reconstruction import SPHERE, ERPair
from .method import VIEWS_CHANNEL_GROUPS, Method, StepOutput
from .moco import MoCo, build_moco


class CMCConfigError(ConfigError):
    """A MODEL.CMC / MODEL / EVAL setting CMC cannot run with."""


def replace_first_conv(backbone: nn.Module, in_channels: int) -> None:
    """torchvision's `conv1` rebuilt for `in_channels` inputs (same shape otherwise), initialised
    as torchvision initialises it (Kaiming normal, fan-out)."""
    old = getattr(backbone, "conv1", None)
    if not isinstance(old, nn.Conv2d):
        raise CMCConfigError(
            f"MODEL.CMC: the backbone's conv1 is a {type(old).__name__}, not the "
            "Conv2d that CMC rebuilds for its view's channels"
        )
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        old.groups,
        old.bias is not None,
    )
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    backbone.conv1 = new.to(old.weight.dtype)


GRAPHS = ("core", "full")


def graph_pairs(views: int, graph: str) -> list[tuple[int, int]]:
    """The pairs (i, j), i < j, 0-based, that CMC's `graph` contrasts among `views` views."""
    if graph not in GRAPHS:
        raise CMCConfigError(f"MODEL.CMC.GRAPH {graph!r}: expected one of {GRAPHS}")
    if graph == "core":
        return [(0, j) for j in range(1, views)]
    return [(i, j) for i in range(views) for j in range(i + 1, views)]


class CMC(Method):
    """MODEL.METHOD moco with MODEL.CMC.ENABLED (registered as moco: MoCo.from_cfg builds it).
    The loss sums the InfoNCE terms "i->j" of the graph's pairs, both directions; the log's I_NCE
    is from their mean, per direction, comparable with MoCo's (InfoMin Fig. 4)."""

    views = VIEWS_CHANNEL_GROUPS
    paper_head = None

    def __init__(self, *branches: MoCo, graph: str = "core"):
        super().__init__()
        if len(branches) < 2:
            raise CMCConfigError("CMC: two views or more")
        first = branches[0]
        if any(
            b.queue_size != first.queue_size or b.batch_negatives != first.batch_negatives
            for b in branches
        ):
            raise CMCConfigError("CMC: every view needs the same queue size and negatives")
        self.num_views = len(branches)
        for i, branch in enumerate(branches):
            self.add_module(f"view{i + 1}", branch)  # view1, view2: the two-view checkpoints' keys
        self.pairs = graph_pairs(len(branches), graph)
        self.info_nce_terms = tuple(
            term for i, j in self.pairs for term in (f"{i + 1}->{j + 1}", f"{j + 1}->{i + 1}")
        )

    @property
    def branches(self) -> list[MoCo]:
        return [getattr(self, f"view{i + 1}") for i in range(self.num_views)]

    @classmethod
    def check_cfg(cls, cfg) -> None:
        if cfg.MODEL.JIGSAW.ENABLED:
            raise CMCConfigError(
                "MODEL.CMC.ENABLED and MODEL.JIGSAW.ENABLED: CMC has no JigSaw branch; turn one off"
            )
        if cfg.EVAL.KNN_PERIOD and cfg.EVAL.KNN_FEATURES == "embedding":
            raise CMCConfigError(
                "EVAL.KNN_FEATURES embedding with MODEL.CMC.ENABLED: CMC has "
                "one embedding per view; the kNN monitor reads every backbone "
                "(EVAL.KNN_FEATURES backbone)"
            )
        graph_pairs(2, cfg.MODEL.CMC.GRAPH)

    @property
    def queue_size(self) -> int:
        return self.view1.queue_size

    def num_negatives(self, global_batch_size: int) -> int:
        """Negatives per query (each direction contrasts against one queue)."""
        return self.view1.num_negatives(global_batch_size)

    @torch.no_grad()
    def momentum_update(self) -> None:
        for branch in self.branches:
            branch.momentum_update()

    def after_optimizer_step(self) -> None:
        self.momentum_update()

    def readout_backbone(self, cfg) -> nn.Module:
        """Every query backbone as one feature extractor of RGB images (CMCReadoutBackbone)."""
        learned = _learned_views(cfg)  # one load serves the split and the readout
        return CMCReadoutBackbone(
            self, cfg.DATA.COLOR_SPACE or "rgb", _split(cfg, learned), learned
        )

    def encode_keys(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "CMC's keys are per view: the probes score CrossViewPair (evaluation/mutual_info.py)"
        )

    @staticmethod
    def _contrast(queries, keys, all_keys, negatives, branch: MoCo):
        """InfoNCE of `queries` against the other view's keys and queue (`branch` holds them)."""
        batch = (
            dict(batch_keys=all_keys, offset=du.get_rank() * len(keys))
            if branch.batch_negatives
            else {}
        )
        return info_nce(queries, keys, negatives, branch.temperature, **batch)

    def forward(self, *view_images: torch.Tensor):
        """The loss, logits of every direction stacked along the batch, and each direction's
        term. The keys are enqueued after the loss used the queues; `after_optimizer_step()`
        moves the key encoders."""
        branches = self.branches
        if len(view_images) != len(branches):
            raise CMCConfigError(
                f"CMC with {len(branches)} views was given {len(view_images)} "
                "channel groups (DATA.CHANNEL_SPLIT)"
            )
        queries = [b.query_encoder(x) for b, x in zip(branches, view_images)]
        keys = [b.encode_keys(x) for b, x in zip(branches, view_images)]  # shuffle-BN in order
        all_keys = [du.all_gather_cat(k) for k in keys]
        queues = [b.queue.clone() for b in branches]
        loss, logits, terms = 0, [], {}
        for i, j in self.pairs:
            for a, b in ((i, j), (j, i)):
                term, term_logits = self._contrast(
                    queries[a], keys[b], all_keys[b], queues[b], branches[b]
                )
                loss = loss + term
                logits.append(term_logits)
                terms[f"{a + 1}->{b + 1}"] = term.detach()
        for branch, gathered in zip(branches, all_keys):
            branch.enqueue(gathered)
        first, second = self.pairs[0]  # the core view and the next
        return StepOutput(
            loss, torch.cat(logits), terms, ERPair(SPHERE, queries[first].detach(), keys[second])
        )


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
    return CMC(
        *(_view_branch(cfg, k) for k in _split(cfg, _learned_views(cfg))), graph=cfg.MODEL.CMC.GRAPH
    )


def _learned_views(cfg):
    """The frozen generator of DATA.COLOR_SPACE learned (loaded and checked), else None."""
    from ..data.learned_views import LEARNED_SPACE, learned_views_of

    return learned_views_of(cfg) if cfg.DATA.COLOR_SPACE == LEARNED_SPACE else None


def _split(cfg, learned=None) -> tuple[int, ...]:
    """(k1, k2, ...) of DATA.CHANNEL_SPLIT, checked against the colour space, or the generator's
    split with `learned` (_learned_views)."""
    from ..data.color_spaces import check_split

    if learned is not None:
        return learned.split, learned.generator.channels - learned.split
    return check_split(cfg.DATA.COLOR_SPACE or "rgb", cfg.DATA.CHANNEL_SPLIT)


class CMCReadoutBackbone(nn.Module):
    """Every query backbone of a CMC model as one feature extractor for the readouts (kNN,
    linear), as CMC evaluates (Tian et al. 2019, Sec. 4.1): an ImageNet-normalised RGB batch is
    taken back to [0, 1], converted to the model's colour space and normalised as in training,
    split, each part encoded by its view's backbone, and the features concatenated."""

    def __init__(self, model: CMC, space: str, split: tuple[int, ...], learned=None):
        super().__init__()
        self.encoders = nn.ModuleList(b.query_encoder.backbone for b in model.branches)
        self.space, self.split = space, split
        # With learned views: the frozen generator (a module of its own, moved with this one).
        self.generator = learned.generator if learned is not None else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from ..data.color_spaces import denormalize, normalize, split_channels, to_space
        from ..data.views import IMAGENET_MEAN, IMAGENET_STD

        if self.generator is not None:  # g reads the ImageNet-normalised images as they are
            with torch.no_grad():
                groups = split_channels(self.generator(images), self.split)
        else:
            rgb = denormalize(images, IMAGENET_MEAN, IMAGENET_STD).clamp(0, 1)
            groups = split_channels(normalize(to_space(rgb, self.space), self.space), self.split)
        return torch.cat([encode(x) for encode, x in zip(self.encoders, groups)], dim=1)


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
