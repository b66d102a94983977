#!/usr/bin/env python
"""The peer side of bench/peers.py: one pretraining run written the way lightly's own examples
write it (a plain PyTorch loop over lightly's transforms, heads, losses and momentum update), on
the backbone our side trains (torchvision ResNet-18 with our small-image stem, built by
pretrain.models.backbone so the two trunks are the same module). Prints one line per step,
`iter N/S loss X`, which bench/peers.py timestamps as it reads them, and writes the trunk's
torchvision state dict to OUTPUT/backbone.pth for tools/knn.py.

Needs the optional benchmark dependency (`make bench-peers` installs lightly).

    python bench/peer_lightly.py --method mocov2 --images DIR --output DIR [--steps 200]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import random

import numpy as np
import torch
import torchvision
from torch import nn

from pretrain.models.backbone import build_backbone


def views(crop: int):
    """Two views from one recipe, as our side draws them: crop scale (0.2, 1), flip, jitter
    (0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale p 0.2, no blur (3 px at 32 px), ImageNet mean/std."""
    from lightly.transforms.multi_view_transform import MultiViewTransform
    from lightly.transforms.simclr_transform import SimCLRViewTransform

    view = SimCLRViewTransform(
        input_size=crop,
        cj_prob=0.8,
        cj_strength=1.0,
        cj_bright=0.4,
        cj_contrast=0.4,
        cj_sat=0.4,
        cj_hue=0.1,
        min_scale=0.2,
        random_gray_scale=0.2,
        gaussian_blur=0.0,
    )
    return MultiViewTransform([view, view])


class WithMomentumCopy(nn.Module):
    """A backbone and head with a frozen momentum copy of both (MoCo's key encoder, BYOL's
    target, DINO's teacher), moved by lightly's update_momentum at the start of every step, as
    lightly's examples move it."""

    def start_momentum_copy(self, momentum: float, key_head: nn.Module | None = None) -> None:
        """`key_head`: a freshly built head to load the student's weights into, for heads that
        cannot be deep-copied (DINO's weight-normalised last layer)."""
        self.key_backbone = copy.deepcopy(self.backbone)
        self.key_head = copy.deepcopy(self.head) if key_head is None else key_head
        self.key_head.load_state_dict(self.head.state_dict())
        for p in [*self.key_backbone.parameters(), *self.key_head.parameters()]:
            p.requires_grad_(False)
        self.m = momentum

    def momentum_step(self) -> None:
        from lightly.models.utils import update_momentum

        update_momentum(self.backbone, self.key_backbone, self.m)
        update_momentum(self.head, self.key_head, self.m)

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        return self.key_head(self.key_backbone(x))


class MoCoV2(WithMomentumCopy):
    """lightly's MoCo example: MoCoProjectionHead, NTXentLoss with a memory bank (the queue),
    update_momentum; one direction (query from view 1, key from view 2), as MoCo v2."""

    def __init__(self, backbone, dim, a):
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules import MoCoProjectionHead

        self.backbone, self.head = backbone, MoCoProjectionHead(dim, a.hidden, a.feat)
        self.start_momentum_copy(a.momentum)
        self.loss = NTXentLoss(temperature=a.temperature, memory_bank_size=(a.queue, a.feat))

    def forward(self, x1, x2):
        self.momentum_step()
        return self.loss(self.head(self.backbone(x1)), self.keys(x2))


class SimCLR(nn.Module):
    def __init__(self, backbone, dim, a):
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        self.backbone, self.head = backbone, SimCLRProjectionHead(dim, a.hidden, a.feat)
        self.loss = NTXentLoss(temperature=a.temperature)

    def forward(self, x1, x2):
        return self.loss(self.head(self.backbone(x1)), self.head(self.backbone(x2)))


class BYOL(WithMomentumCopy):
    """lightly's BYOL example with a constant target momentum. Its loss, the mean of the two
    directions' negative cosines, is scaled by 4 to give our loss's gradient (the sum over the
    two directions of 2 - 2 cos), so one learning rate means the same step on both sides."""

    def __init__(self, backbone, dim, a):
        super().__init__()
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

        self.backbone, self.head = backbone, BYOLProjectionHead(dim, a.hidden, a.feat)
        self.predictor = BYOLPredictionHead(a.feat, a.hidden, a.feat)
        self.start_momentum_copy(a.momentum)
        self.loss = NegativeCosineSimilarity()

    def forward(self, x1, x2):
        self.momentum_step()
        p1, p2 = (self.predictor(self.head(self.backbone(x))) for x in (x1, x2))
        z1, z2 = self.keys(x1), self.keys(x2)
        return 4 * 0.5 * (self.loss(p1, z2) + self.loss(p2, z1))


class DINO(WithMomentumCopy):
    """lightly's DINO example on the two global crops (no local crops, as our side is run),
    teacher temperature 0.04 throughout, constant teacher momentum, last layer never frozen."""

    def __init__(self, backbone, dim, a):
        super().__init__()
        from lightly.loss import DINOLoss
        from lightly.models.modules import DINOProjectionHead

        self.backbone = backbone
        self.head = DINOProjectionHead(dim, a.hidden, a.feat, a.out_dim)
        # The teacher head is built as lightly's example builds it and starts from the student's
        # weights, as DINO's release does.
        self.start_momentum_copy(a.momentum, DINOProjectionHead(dim, a.hidden, a.feat, a.out_dim))
        self.loss = DINOLoss(output_dim=a.out_dim, warmup_teacher_temp_epochs=0)

    def forward(self, x1, x2):
        self.momentum_step()
        student = [self.head(self.backbone(x)) for x in (x1, x2)]
        teacher = [self.keys(x) for x in (x1, x2)]
        return self.loss(teacher, student, epoch=0)


METHODS = {"mocov2": MoCoV2, "simclr": SimCLR, "byol": BYOL, "dino": DINO}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", choices=sorted(METHODS), required=True)
    parser.add_argument("--images", required=True, help="class folders (torchvision ImageFolder)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--stem", default="tinyimagenet")
    parser.add_argument("--lr", type=float, required=True, help="the peak lr (cosine to 0)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--feat", type=int, default=128)
    parser.add_argument("--out-dim", type=int, default=4096, help="DINO's prototypes")
    parser.add_argument("--temperature", type=float, default=0.2)
    parser.add_argument("--queue", type=int, default=4096)
    parser.add_argument("--momentum", type=float, default=0.99, help="EMA (constant)")
    a = parser.parse_args(argv)
    torch.set_num_threads(a.threads)
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    backbone, dim = build_backbone("resnet18", stem=a.stem)
    model = METHODS[a.method](backbone, dim, a)
    dataset = torchvision.datasets.ImageFolder(a.images, transform=views(a.crop))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=a.batch,
        shuffle=True,
        drop_last=True,
        num_workers=a.workers,
        generator=torch.Generator().manual_seed(a.seed),
        persistent_workers=a.workers > 0,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=a.lr, momentum=0.9, weight_decay=a.weight_decay)
    step = 0
    while step < a.steps:
        for (x1, x2), _ in loader:
            for group in optimizer.param_groups:  # cosine to 0 over the run, per step
                group["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * step / a.steps))
            loss = model(x1, x2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            print(f"iter {step}/{a.steps} loss {loss.item():.4f}", flush=True)
            if step == a.steps:
                break
    os.makedirs(a.output, exist_ok=True)
    torch.save(backbone.state_dict(), os.path.join(a.output, "backbone.pth"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
