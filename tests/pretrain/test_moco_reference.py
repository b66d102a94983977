"""Our MoCo stepped side by side with a minimal independent implementation of the paper's
Algorithm 1 (He et al. 2020, "Momentum Contrast for Unsupervised Visual Representation Learning"),
in float64, for three SGD steps on the same batches.

The reference below is written from the paper's pseudo-code, not from pretrain/: f_k starts as a
copy of f_q; per batch q = f_q(x_q), k = f_k(x_k) under shuffle-BN and detached, l_pos = q.k,
l_neg = q.queue, logits / T, cross-entropy with the positive at index 0, an SGD step on f_q,
then f_k <- m f_k + (1 - m) f_q (parameters), then the keys are enqueued over the oldest entries.
Shuffle-BN in one process is done as MoCo's own one-GPU CIFAR demo does it: BN statistics over G
groups of the batch, and the key batch permuted before f_k and put back in order after. Extras
checked the same way: the batch's other keys as additional negatives (MODEL.BATCH_NEGATIVES), and
PIRL's / InfoMin's jigsaw branch, loss = (1 - w) L_instance + w L_jigsaw.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from pretrain.config import load_cfg
from pretrain.pretraining import build_optimizer
from pretrain.models.moco import build_moco
from tests.pretrain.reference_parts import assert_same_init_law, start_from_the_release

BATCH, GROUPS, QUEUE, FEAT_DIM, HIDDEN = 8, 2, 16, 8, 16
GRID = 2  # jigsaw patches per side: PIRL's 3 x 3 runs the same code, 2 x 2 keeps the test fast
M, T, LR, SGD_MOMENTUM, WEIGHT_DECAY = 0.9, 0.2, 0.1, 0.9, 1e-4
JIGSAW_WEIGHT = 0.25  # not 0.5, so that swapping w and 1 - w shows
STEPS = 3
TOL = 1e-6


# ----------------------------------------------------------------- the reference, from the paper


class GroupBatchNorm(nn.Module):
    """Training-mode BN with statistics per group of the batch (each group one 'GPU'), grouped as
    the demo's SplitBatchNorm views the batch, (N / G, G x C): image s in group s mod G; every
    group updates the running statistics as plain BN would, and their average is kept."""

    def __init__(self, channels: int, groups: int, eps: float, momentum: float):
        super().__init__()
        self.groups, self.eps, self.momentum = groups, eps, momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        grouped = x.reshape(n // self.groups, self.groups, c, h, w)
        mean = grouped.mean(dim=(0, 3, 4), keepdim=True)
        var = ((grouped - mean) ** 2).mean(dim=(0, 3, 4), keepdim=True)  # biased, to normalise
        out = (grouped - mean) / torch.sqrt(var + self.eps)
        out = out * self.weight.view(1, 1, c, 1, 1) + self.bias.view(1, 1, c, 1, 1)
        with torch.no_grad():
            count = n // self.groups * h * w
            unbiased = var * count / (count - 1)
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.reshape(self.groups, c).mean(dim=0))
            self.running_var.mul_(1 - m).add_(m * unbiased.reshape(self.groups, c).mean(dim=0))
            self.num_batches_tracked += 1
        return out.reshape(n, c, h, w)


def reference_trunk(groups: int) -> nn.Module:
    """torchvision's ResNet-18 without its classifier, every BN computed over `groups` groups."""
    trunk = torchvision.models.resnet18(weights=None)
    trunk.fc = nn.Identity()
    for name, module in list(trunk.named_modules()):
        if isinstance(module, nn.BatchNorm2d):
            parent_name, _, child = name.rpartition(".")
            parent = trunk.get_submodule(parent_name) if parent_name else trunk
            setattr(
                parent,
                child,
                GroupBatchNorm(module.num_features, groups, module.eps, module.momentum),
            )
    return trunk


def reference_head(kind: str, in_dim: int) -> nn.Module:
    if kind == "linear":  # MoCo v1
        return nn.Linear(in_dim, FEAT_DIM)
    return nn.Sequential(nn.Linear(in_dim, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, FEAT_DIM))


class ReferenceMoCo:
    """Algorithm 1 of the paper; queue stored C x K as in the paper's pseudo-code."""

    def __init__(self, head: str, batch_negatives: bool, jigsaw: bool):
        self.f_q = nn.ModuleDict(
            dict(backbone=reference_trunk(GROUPS), head=reference_head(head, 512))
        ).double()
        self.f_k = nn.ModuleDict(
            dict(backbone=reference_trunk(GROUPS), head=reference_head(head, 512))
        ).double()
        self.jigsaw = None
        if jigsaw:
            self.jigsaw = nn.ModuleDict(
                dict(
                    patch_head=reference_head(head, 512), fc=nn.Linear(GRID**2 * FEAT_DIM, FEAT_DIM)
                )
            ).double()
        self.batch_negatives = batch_negatives
        # The release (moco/builder.py): f_k built, then overwritten with f_q; the queue drawn
        # from N(0, 1) and each column normalised.
        self.f_k.load_state_dict(self.f_q.state_dict())
        self.queue = F.normalize(torch.randn(FEAT_DIM, QUEUE, dtype=torch.float64), dim=0)
        self.ptr = 0
        self.velocity: dict[int, torch.Tensor] = {}

    def trainable(self) -> list[nn.Parameter]:
        return list(self.f_q.parameters()) + (
            [] if self.jigsaw is None else list(self.jigsaw.parameters())
        )

    @staticmethod
    def embed(f: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(f["head"](f["backbone"](x)), dim=1)

    def contrastive_loss(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        n = len(q)
        l_pos = torch.bmm(q.view(n, 1, -1), k.view(n, -1, 1)).view(n, 1)
        l_neg = torch.mm(q, self.queue)
        if self.batch_negatives:  # the other images' keys; the own key is the positive already
            l_batch = torch.mm(q, k.t()).masked_fill(torch.eye(n, dtype=torch.bool), -torch.inf)
            l_neg = torch.cat([l_batch, l_neg], dim=1)
        logits = torch.cat([l_pos, l_neg], dim=1) / T
        return F.cross_entropy(logits, torch.zeros(n, dtype=torch.long))

    def jigsaw_embedding(self, patches: torch.Tensor) -> torch.Tensor:
        """Each patch through the backbone and a shared head, the patches of an image put in a
        random order, concatenated, projected."""
        n, p = patches.shape[:2]
        per_patch = self.jigsaw["patch_head"](self.f_q["backbone"](patches.flatten(0, 1)))
        per_patch = per_patch.view(n, p, -1)
        order = torch.rand(n, p).argsort(dim=1)
        shuffled = torch.stack([per_patch[i, order[i]] for i in range(n)])
        return F.normalize(self.jigsaw["fc"](shuffled.flatten(1)), dim=1)

    def step(self, x_q: torch.Tensor, x_k: torch.Tensor, patches: torch.Tensor | None) -> float:
        q = self.embed(self.f_q, x_q)
        with torch.no_grad():  # k.detach(): no gradient to the keys
            shuffle = torch.randperm(len(x_k))
            k = self.embed(self.f_k, x_k[shuffle])[torch.argsort(shuffle)]
        loss = self.contrastive_loss(q, k)
        if patches is not None:
            loss = (1 - JIGSAW_WEIGHT) * loss + JIGSAW_WEIGHT * self.contrastive_loss(
                self.jigsaw_embedding(patches), k
            )
        params = self.trainable()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for i, (p, g) in enumerate(zip(params, grads)):  # SGD, momentum, weight decay
                d = g + WEIGHT_DECAY * p
                v = d if i not in self.velocity else SGD_MOMENTUM * self.velocity[i] + d
                self.velocity[i] = v
                p -= LR * v
            for p_k, p_q in zip(self.f_k.parameters(), self.f_q.parameters()):
                p_k.copy_(M * p_k + (1 - M) * p_q)
            self.queue[:, self.ptr : self.ptr + len(k)] = k.t()  # enqueue over the oldest keys
            self.ptr = (self.ptr + len(k)) % QUEUE
        return loss.item()


# ------------------------------------------------------------------------------ the comparison


def project_model(build, *opts: str):
    """The project's model of a reference test (build_moco or build_cmc): ResNet-18 with the
    settings above and `opts`, in float64 from seed 0, with its optimizer and schedule at LR."""
    cfg = load_cfg(
        opts=[
            "MODEL.ARCH",
            "resnet18",
            "MODEL.FEAT_DIM",
            str(FEAT_DIM),
            "MODEL.HEAD_HIDDEN_DIM",
            str(HIDDEN),
            "MODEL.QUEUE_SIZE",
            str(QUEUE),
            "MODEL.MOMENTUM",
            str(M),
            "MODEL.TEMPERATURE",
            str(T),
            "MODEL.BN_SPLITS",
            str(GROUPS),
            "MODEL.SHUFFLE_BN",
            "True",
            "SOLVER.BATCH_SIZE",
            str(BATCH),
            "SOLVER.BASE_LR",
            str(LR * 256 / BATCH),
            "SOLVER.MOMENTUM",
            str(SGD_MOMENTUM),
            "SOLVER.WEIGHT_DECAY",
            str(WEIGHT_DECAY),
            "SOLVER.WARMUP_EPOCHS",
            "0.0",
            *opts,
        ]
    )
    torch.manual_seed(0)
    model = build(cfg).double().train()
    # A cosine over 10^9 iterations: the factor after 3 of them is 1.0 in float64.
    optimizer, scheduler = build_optimizer(cfg, model, iters_per_epoch=1, total_iters=10**9)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(LR, abs=1e-15)
    return model, optimizer, scheduler


def project_moco(head: str, batch_negatives: bool, jigsaw: bool):
    return project_model(
        build_moco,
        "MODEL.HEAD",
        head,
        "MODEL.BATCH_NEGATIVES",
        str(batch_negatives),
        "MODEL.JIGSAW.ENABLED",
        str(jigsaw),
        "MODEL.JIGSAW.GRID",
        str(GRID),
        "MODEL.JIGSAW.LOSS_WEIGHT",
        str(JIGSAW_WEIGHT),
    )


def start_from_the_releases_state(model, reference: ReferenceMoCo) -> None:
    """Ours starts by the release's laws (f_k a copy of f_q, unit-norm random keys in the
    queue), then takes the reference's draws."""
    start_from_the_release(model.query_encoder, reference.f_q, "f_q", model.key_encoder)
    if reference.jigsaw is not None:
        start_from_the_release(model.jigsaw_head, reference.jigsaw, "jigsaw")
    queue = {"queue": reference.queue.t()}
    assert_same_init_law({"queue": model.queue}, queue, "queue")
    assert model.queue.norm(dim=1).sub(1).abs().max() <= 1e-6  # unit keys, drawn in float32
    model.queue.copy_(queue["queue"])
    assert int(model.queue_ptr) == reference.ptr == 0


def assert_same_state(model, reference: ReferenceMoCo, step: int) -> None:
    pairs = [
        ("query", model.query_encoder, reference.f_q),
        ("key", model.key_encoder, reference.f_k),
    ]
    if reference.jigsaw is not None:
        pairs.append(("jigsaw", model.jigsaw_head, reference.jigsaw))
    for side, ours, theirs in pairs:
        ours, theirs = ours.state_dict(), theirs.state_dict()  # parameters and BN buffers
        assert ours.keys() == theirs.keys()
        for name in ours:
            diff = (ours[name].double() - theirs[name].double()).abs().max().item()
            assert diff <= TOL, f"step {step}: {side} {name} differs by {diff:.2e}"
    diff = (model.queue - reference.queue.t()).abs().max().item()
    assert diff <= TOL, f"step {step}: queue differs by {diff:.2e}"
    assert int(model.queue_ptr) == reference.ptr, f"step {step}: queue pointer"


@pytest.mark.parametrize(
    "head, batch_negatives, jigsaw",
    [
        ("mlp", False, False),  # MoCo v2
        ("linear", True, False),  # MoCo v1's head, with the batch's other keys as extra negatives
        ("mlp", False, True),  # InfoMin / PIRL: instance and jigsaw branches
    ],
)
def test_moco_steps_like_algorithm_1_of_the_paper(head, batch_negatives, jigsaw):
    model, optimizer, scheduler = project_moco(head, batch_negatives, jigsaw)
    reference = ReferenceMoCo(head, batch_negatives, jigsaw)
    start_from_the_releases_state(model, reference)
    assert_same_state(model, reference, step=0)

    g = torch.Generator().manual_seed(1)
    for step in range(STEPS):
        x_q, x_k = torch.randn(2, BATCH, 3, 16, 16, generator=g, dtype=torch.float64)
        patches = (
            torch.randn(BATCH, GRID**2, 3, 8, 8, generator=g, dtype=torch.float64)
            if jigsaw
            else None
        )
        seed = 1000 + step  # as the trainer does: a fresh seed before each step

        torch.manual_seed(seed)  # ours, as pretrain/pretraining.py steps it
        loss = model(x_q, x_k, *([patches] if jigsaw else [])).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        model.after_optimizer_step()

        torch.manual_seed(seed)  # the same draws for the reference's permutation and patch order
        reference_loss = reference.step(x_q, x_k, patches)

        assert abs(loss.item() - reference_loss) <= TOL, f"step {step}: loss"
        assert_same_state(model, reference, step + 1)
