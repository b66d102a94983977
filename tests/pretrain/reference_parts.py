"""Parts shared by the reference-equivalence tests, written from the papers and releases, not
from pretrain/: a ResNet-18 trunk, MLPs with BN, the SGD, LARS and LARC updates, the cosine
schedules, the memory bank's release draw, and the comparisons of our model's state with the
reference's: at the start by law (the reference builds its own networks from the release's
initialisation; ours must start by the same law, then takes the reference's draw), after each
step tensor for tensor."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from pretrain.config import load_cfg
from pretrain.pretraining import build_optimizer
from pretrain.models.registry import build_model

BATCH, FEAT_DIM, HIDDEN, PRED_HIDDEN = 8, 8, 16, 8
LR, SGD_MOMENTUM, WEIGHT_DECAY, TRUST = 0.1, 0.9, 1e-4, 0.001
TOL = 1e-6


@torch.no_grad()
def release_law_(module: nn.Module, framework: str) -> nn.Module:
    """Redraw the conv and Linear weights as the non-PyTorch releases' frameworks do (biases 0).
    "tf", SimCLR's (resnet.py, model_util.py): convs from tf.variance_scaling_initializer() -
    scale 1, fan-in, a normal truncated at two of its standard deviations, divided by
    0.87962566103423978 (the truncated unit normal's) so that the draws' deviation is
    sqrt(1 / fan_in); dense layers from random_normal_initializer(stddev=.01). "haiku",
    BYOL's: hk.Conv2D's and hk.Linear's default TruncatedNormal(1 / sqrt(fan_in)), the
    deviation before the truncation at +-2. "torch": as built."""
    for layer in module.modules():
        if framework == "torch" or not isinstance(layer, (nn.Conv2d, nn.Linear)):
            continue
        fan_in = layer.weight[0].numel()
        std = 1 / math.sqrt(fan_in)
        if framework == "tf" and isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 0.01)
        else:
            std = std / 0.87962566103423978 if framework == "tf" else std
            nn.init.trunc_normal_(layer.weight, 0.0, std, -2 * std, 2 * std)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    return module


def trunk(zero_init_residual: bool = False) -> nn.Module:
    """torchvision's ResNet-18 without its classifier: f, giving the 512-d representation;
    `zero_init_residual` as the SimSiam, MoCo v3 and SimCLR releases build it (each block's
    last BN scale starts at 0)."""
    net = torchvision.models.resnet18(weights=None, zero_init_residual=zero_init_residual)
    net.fc = nn.Identity()
    return net


class AffineFreeBN(nn.Module):
    """Training-mode BN over the batch with an optional learned scale and no shift."""

    def __init__(self, dim: int, scale: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim)) if scale else None
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.num_batches_tracked += 1
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, None, True, 0.1, 1e-5
        )


def mlp(dims: list[int], last: str, last_bias: bool = True) -> nn.Sequential:
    """Linear - BN - ReLU between dims[i] and dims[i+1], the last Linear followed by `last`:
    "none", "scale" (BN with a scale, no shift) or "plain" (BN with neither)."""
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-2], dims[1:-1]):
        layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU()]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=last_bias and last == "none"))
    if last != "none":
        layers.append(AffineFreeBN(dims[-1], scale=last == "scale"))
    return nn.Sequential(*layers)


def network(
    projector: nn.Module, zero_init_residual: bool = False, framework: str = "torch"
) -> nn.ModuleDict:
    """Trunk and projector, the weights drawn by the release's `framework` (release_law_)."""
    net = nn.ModuleDict(dict(backbone=trunk(zero_init_residual), head=projector))
    return release_law_(net, framework).double()


def project(method: str, *opts: str, total_iters: int = 10**9):
    """Our model of MODEL.METHOD `method` (tiny ResNet-18), and the trainer's optimizer and
    schedule. A cosine over 10^9 iterations keeps the rate at LR for a few steps."""
    cfg = load_cfg(
        opts=[
            "MODEL.METHOD",
            method,
            "MODEL.HEAD",
            method,
            "MODEL.ARCH",
            "resnet18",
            "MODEL.FEAT_DIM",
            str(FEAT_DIM),
            "MODEL.HEAD_HIDDEN_DIM",
            str(HIDDEN),
            "MODEL.PREDICTOR_HIDDEN_DIM",
            str(PRED_HIDDEN),
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
            "SOLVER.LARS_TRUST_COEFFICIENT",
            str(TRUST),
            *opts,
        ]
    )
    torch.manual_seed(0)
    model = build_model(cfg).double().train()
    model.start_run(0, 1, total_iters)  # as the trainer does (no memory-bank method here)
    optimizer, scheduler = build_optimizer(cfg, model, iters_per_epoch=1, total_iters=total_iters)
    return model, optimizer, scheduler


def cosine_lr(step: int, total: int) -> float:
    """The learning rate of step `step` (0-based): cosine decay without restarts, no warm-up."""
    return LR * 0.5 * (1 + math.cos(math.pi * step / total))


class ReferenceOptimizer:
    """SGD with momentum 0.9 and weight decay, or LARS as the papers' releases compute it: for
    every weight tensor of more than one dimension, d = grad + wd w scaled by
    TRUST * |w| / |d|; biases and BN parameters get neither weight decay nor the scaling.
    `decay_1d` False: SGD without weight decay on biases and norms (DINO's parameter groups).
    `larc`: apex's LARC (clip False) as SwAV's release wraps its SGD: every tensor, 1-D included,
    d = (grad + wd w) TRUST |w| / (|grad| + wd |w| + 1e-8) where both norms are non-zero."""

    def __init__(self, lars: bool, decay_1d: bool = True, larc: bool = False):
        self.lars, self.decay_1d, self.larc = lars, decay_1d, larc
        self.velocity: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor], lrs: list[float]):
        for i, (p, g, lr) in enumerate(zip(params, grads, lrs)):
            if self.larc:
                w_norm, g_norm = p.norm(), g.norm()
                d = g.clone()
                if w_norm != 0 and g_norm != 0:
                    d = (g + WEIGHT_DECAY * p) * (
                        TRUST * w_norm / (g_norm + w_norm * WEIGHT_DECAY + 1e-8)
                    )
            elif (self.lars or not self.decay_1d) and p.ndim == 1:
                d = g.clone()
            else:
                d = g + WEIGHT_DECAY * p
                if self.lars:
                    d = d * (TRUST * p.norm() / d.norm())
            self.velocity[i] = d if i not in self.velocity else SGD_MOMENTUM * self.velocity[i] + d
            p -= lr * self.velocity[i]


def assert_same(ours: nn.Module, theirs: nn.Module, label: str, step: int) -> None:
    """Every parameter and buffer of `theirs` equal in `ours`, within TOL; a tensor only ours has
    must be a frozen zero shift (the BN whose shift SimCLR does not learn)."""
    ours, theirs = ours.state_dict(), theirs.state_dict()
    for name in ours.keys() - theirs.keys():
        assert name.endswith("bias") and not ours[name].any(), f"{label}: {name} only in ours"
    assert theirs.keys() <= ours.keys(), f"{label}: {sorted(theirs.keys() - ours.keys())}"
    for name in theirs:
        diff = (ours[name].double() - theirs[name].double()).abs().max().item()
        assert diff <= TOL, f"step {step}: {label} {name} differs by {diff:.2e}"


def assert_same_init_law(ours: dict, theirs: dict, label: str) -> None:
    """Our initial state drawn by the release's law, tensor by tensor (the reference built its
    own under another seed, so the random draws differ). What the release sets to a constant
    (BN's ones and zeros, zero_init_residual's zero scales, a zeroed bias, the step counters) is
    that constant in ours. A random tensor has the release's scale and centre: for n entries the
    log of the RMS ratio has a standard deviation of about 1 / sqrt(n) and the difference of
    the means about sqrt(2 / n) RMS, and both must stay within 5 of those (the RMS within 1.03x
    for a 3x3 conv of 64 channels, 1.9x for a 64-entry bias). A different law, such as
    N(0, 0.01) for a Linear where PyTorch's default has RMS 1 / sqrt(3 fan_in), a stem conv
    with torch's default where the release draws kaiming's fan-out normal, or a bias where the
    release has none, fails here; the seeds are fixed, so a pass is a pass on every run."""
    for name in ours.keys() - theirs.keys():
        assert name.endswith("bias") and not ours[name].any(), f"{label}: {name} only in ours"
    assert theirs.keys() <= ours.keys(), (
        f"{label}: only the release has {sorted(theirs.keys() - ours.keys())}"
    )
    for name, release in theirs.items():
        mine = ours[name]
        assert mine.shape == release.shape, f"{label} {name}: {tuple(mine.shape)} vs release"
        release, mine = release.double(), mine.double()
        if release.numel() == 1 or bool((release == release.flatten()[0]).all()):
            assert torch.equal(mine, release), (
                f"{label} {name}: the release starts it at the constant "
                f"{release.flatten()[0].item():g}, ours does not"
            )
            continue
        rms = lambda t: t.pow(2).mean().sqrt().item()  # noqa: E731
        n = release.numel()
        ratio, bound = rms(mine) / rms(release), math.exp(5 / math.sqrt(n))
        assert 1 / bound <= ratio <= bound, (
            f"{label} {name}: initial scale {ratio:.2f}x the release's (allowed {bound:.2f}x)"
        )
        shift = (mine.mean() - release.mean()).abs().item() / rms(release)
        assert shift <= 5 * math.sqrt(2 / n), (
            f"{label} {name}: initial mean {shift:.3f} RMS off the release's"
        )


def start_from_the_release(
    ours: nn.Module, reference: nn.Module, label: str, *momentum_copies: nn.Module
) -> None:
    """The reference side builds its networks itself, from the release's recipe; ours must
    start by the same law (assert_same_init_law) and then takes the reference's draw, so that
    the steps compare exactly. `momentum_copies`: our networks that start as copies of `ours`
    (a momentum encoder); they must equal it and take the same draw. Our tensors the release
    lacks are SimCLR's frozen zero shifts."""
    assert_same_init_law(ours.state_dict(), reference.state_dict(), label)
    for copy in momentum_copies:
        assert_same(copy, ours, f"{label}'s momentum copy at the start", step=0)
    for net in (ours, *momentum_copies):
        missing, unexpected = net.load_state_dict(reference.state_dict(), strict=False)
        assert not unexpected and all(k.endswith("bias") for k in missing), (missing, unexpected)


def trainer_step(model, optimizer, scheduler, *views, step_model=None) -> float:
    """One step as pretrain/pretraining.py takes it (through `step_model`, e.g. DDP's
    wrapper of `model`, if given)."""
    loss = (step_model or model)(*views).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if model.adjusts_gradients:  # SwAV's, DINO's frozen layers and clipping
        model.before_optimizer_step()
    optimizer.step()
    scheduler.step()
    model.after_optimizer_step()
    return loss.item()


def batches(steps: int, size: int = 16):
    g = torch.Generator().manual_seed(1)
    return [
        tuple(torch.randn(2, BATCH, 3, size, size, generator=g, dtype=torch.float64))
        for _ in range(steps)
    ]


# The memory-bank methods (InsDis, PIRL), from the papers' equations: a bank of N_IMAGES entries,
# NEGATIVES noise samples per image, InsDis's NCE (Wu et al. 2018, Eq. 4-7) and InfoNCE.
N_IMAGES, NEGATIVES, BANK_T, BANK_MOMENTUM = 40, 16, 0.07, 0.5


def bank_batches(steps: int, size: int = 16, patches: int = 0):
    """Per step: images (B, 3, size, size), B distinct bank rows, and with `patches` a
    (B, patches, 3, 8, 8) stack of JigSaw patches."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(steps):
        images = torch.randn(BATCH, 3, size, size, generator=g, dtype=torch.float64)
        rows = torch.randperm(N_IMAGES, generator=g)[:BATCH]
        jigsaw = torch.randn(BATCH, patches, 3, 8, 8, generator=g, dtype=torch.float64)
        out.append((images, jigsaw, rows) if patches else (images, rows))
    return out


def release_bank(normalise: bool) -> torch.Tensor:
    """The memory bank as lemniscate's NCEAverage and VISSL's draw it: U(-a, a) per entry with
    a = 1 / sqrt(dim / 3), so each entry's RMS is 1 / sqrt(dim), as a random unit vector's;
    VISSL (norm_init, True in its NPID and PIRL configs) then normalises each row, lemniscate
    does not. Ours draws unit vectors (normalised Gaussians): a named deviation of the InsDis
    recipe."""
    a = 1 / math.sqrt(FEAT_DIM / 3)
    g = torch.Generator().manual_seed(7)
    bank = torch.rand(N_IMAGES, FEAT_DIM, generator=g, dtype=torch.float64) * 2 * a - a
    return F.normalize(bank, dim=1) if normalise else bank


def start_from_the_release_bank(memory_bank, bank: torch.Tensor) -> None:
    """Our bank drawn by the release's law (assert_same_init_law), then given its draw."""
    assert_same_init_law({"bank": memory_bank.vectors}, {"bank": bank}, "memory bank")
    memory_bank.vectors.copy_(bank)


def step_generator(step: int) -> torch.Generator:
    """The project's documented draw protocol (pretrain/models/memory_bank.py): step s of a run
    of SEED 0 draws from a generator seeded with 0 * 1_000_003 + s."""
    return torch.Generator().manual_seed(step)


def nce_terms(
    v: torch.Tensor, bank: torch.Tensor, own: torch.Tensor, negatives: torch.Tensor, z: float
) -> torch.Tensor:
    """InsDis Eq. 5-6 per image i: -log h(i, v) - sum_k log(1 - h(j_k, v)), with
    P(j | v) = exp(bank_j . v / T) / Z (Eq. 4 with Z) and h = P / (P + m P_n), P_n = 1 / n."""
    m, n = negatives.shape[1], len(bank)
    losses = []
    for i in range(len(v)):
        p_own = torch.exp(bank[own[i]] @ v[i] / BANK_T) / z
        p_noise = torch.exp(bank[negatives[i]] @ v[i] / BANK_T) / z
        h_own = p_own / (p_own + m / n)
        h_noise = p_noise / (p_noise + m / n)
        losses.append(-torch.log(h_own) - torch.log(1 - h_noise).sum())
    return torch.stack(losses)


def estimated_z(v: torch.Tensor, bank: torch.Tensor, negatives: torch.Tensor) -> float:
    """Eq. 7 on the first batch: Z = n / m sum_k exp(bank_jk . v_i / T), averaged over i."""
    with torch.no_grad():
        sums = [torch.exp(bank[negatives[i]] @ v[i] / BANK_T).sum() for i in range(len(v))]
        return (len(bank) / negatives.shape[1] * torch.stack(sums).mean()).item()


def info_nce_terms(
    v: torch.Tensor, bank: torch.Tensor, own: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """-log exp(bank_i . v / T) / (exp(bank_i . v / T) + sum_k exp(bank_jk . v / T))."""
    losses = []
    for i in range(len(v)):
        positive = torch.exp(bank[own[i]] @ v[i] / BANK_T)
        noise = torch.exp(bank[negatives[i]] @ v[i] / BANK_T).sum()
        losses.append(-torch.log(positive / (positive + noise)))
    return torch.stack(losses)


@torch.no_grad()
def update_bank(bank: torch.Tensor, own: torch.Tensor, v: torch.Tensor) -> None:
    """InsDis Sec. 3.2: each seen image's entry v_i <- normalise(m v_i + (1 - m) f_i)."""
    for i, row in enumerate(own.tolist()):
        mixed = BANK_MOMENTUM * bank[row] + (1 - BANK_MOMENTUM) * v[i]
        bank[row] = mixed / mixed.norm()


def assert_same_bank(ours: torch.Tensor, theirs: torch.Tensor, step: int) -> None:
    diff = (ours - theirs).abs().max().item()
    assert diff <= TOL, f"step {step}: memory bank differs by {diff:.2e}"
