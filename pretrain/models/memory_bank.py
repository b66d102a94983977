"""The memory bank of InsDis (Wu et al. 2018, "Unsupervised Feature Learning via Non-Parametric
Instance Discrimination", Sec. 3.1-3.2) and PIRL (Misra & van der Maaten 2020, Sec. 3.1-3.2):
one L2-normalised embedding per training image, the positive's key and the source of negatives.

- The bank starts as random unit vectors (InsDis Sec. 3.2), drawn from the run's seed, so every
  process holds the same bank; after each step the global batch's entries become
  v <- normalise(m v + (1 - m) f) (momentum m, 0.5 in both papers), the batch's indices and
  embeddings gathered from every process first, so the banks stay equal.
- Negatives: K indices per anchor, uniform over the bank (InsDis's noise distribution P_n = 1/n,
  the image's own entry included, as both releases draw them; `exclude_own` draws them "from the
  dataset excluding image I" as PIRL's paper words it). Step s's draws come from
  a generator seeded with seed * 1_000_003 + s (s counted in the `step` buffer), one (B, K) draw
  for the whole global batch of which each process takes its rows: reproducible, the same for any
  number of processes, and resumed exactly from a checkpoint, which holds the bank and `step`.
- Losses over the logits s / T (s the cosine of an embedding with a bank entry; column 0 its own
  entry, then its K negatives):
    "nce"     InsDis Eq. 5-7: P(i|v) = exp(s_i / T) / Z, h = P / (P + K / n),
              loss = -log h(own) - sum_k log(1 - h(negative k)), averaged over the anchors;
              Z = n * mean(exp(s_negative / T)) over the first step's global batch (Eq. 7,
              "derived from initial batches"), then kept fixed (buffer `z`).
    "infonce" cross-entropy of the 1 + K logits with the own entry as the class.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from ..common import distributed as du
from ..common.errors import ConfigError
from ..losses import similarity_dtype
from .method import Method

LOSSES = ("nce", "infonce")


def check_memory_bank(cfg) -> None:
    """The MODEL.MEMORY_BANK keys and the data settings a memory-bank method needs: the CPU
    pipeline's one view per image (plus PIRL's patches), each sample carrying its index."""
    m, bank = cfg.MODEL, cfg.MODEL.MEMORY_BANK
    if bank.LOSS not in LOSSES:
        raise ConfigError(f"MODEL.MEMORY_BANK.LOSS {bank.LOSS!r}: expected one of {LOSSES}")
    if bank.NEGATIVES < 1:
        raise ConfigError(f"MODEL.MEMORY_BANK.NEGATIVES {bank.NEGATIVES}: need at least 1")
    if not 0.0 <= bank.MOMENTUM < 1.0:
        raise ConfigError(f"MODEL.MEMORY_BANK.MOMENTUM {bank.MOMENTUM}: expected 0 <= m < 1")
    if m.METHOD == "pirl" and not m.JIGSAW.ENABLED:
        raise ConfigError(
            "MODEL.METHOD pirl needs MODEL.JIGSAW.ENABLED True: its second "
            "embedding is the JigSaw branch's"
        )
    for key, value, needed in (
        ("DATA.PIPELINE", cfg.DATA.PIPELINE, "cpu"),
        ("DATA.VIEWS_FROM", cfg.DATA.VIEWS_FROM, "image"),
        ("DATA.VIEW_FAMILY", cfg.DATA.VIEW_FAMILY, "augment"),
    ):
        if value != needed:
            raise ConfigError(
                f"{key} {value!r} with MODEL.METHOD {m.METHOD}: a memory-bank "
                f"method takes one view per image with its index ({key} {needed})"
            )


class MemoryBank(nn.Module):
    def __init__(
        self,
        dim: int,
        num_negatives: int,
        momentum: float,
        temperature: float,
        loss: str,
        seed: int,
        exclude_own: bool = False,
        z_with_own: bool = False,
        nce_eps: float = 0.0,
    ):
        """`z_with_own`: NCE's Z from all 1 + K columns of the first batch (the own entry too),
        and `nce_eps` added to NCE's denominators, as InsDis's release (lemniscate.pytorch,
        NCEAverage and NCECriterion, eps 1e-7) and PIRL's (VISSL's nce_loss_with_memory, float32's
        eps); without them Eq. 7's K noise columns and no eps."""
        super().__init__()
        self.z_with_own, self.nce_eps = z_with_own, nce_eps
        if loss not in LOSSES:
            raise ConfigError(f"MODEL.MEMORY_BANK.LOSS {loss!r}: expected one of {LOSSES}")
        self.dim, self.num_negatives, self.momentum = dim, num_negatives, momentum
        self.temperature, self.loss_kind, self.seed = temperature, loss, seed
        self.exclude_own = exclude_own
        # Empty until allocate(N): the trainer knows the number of images, the config does not.
        self.register_buffer("vectors", torch.zeros(0, dim))
        self.register_buffer("z", torch.zeros((), dtype=torch.float64))  # 0: not estimated yet
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_cfg(cls, cfg, **options) -> "MemoryBank":
        bank = cfg.MODEL.MEMORY_BANK
        return cls(
            cfg.MODEL.FEAT_DIM,
            bank.NEGATIVES,
            bank.MOMENTUM,
            cfg.MODEL.TEMPERATURE,
            bank.LOSS,
            cfg.SEED,
            **options,
        )

    @property
    def size(self) -> int:
        return self.vectors.shape[0]

    @torch.no_grad()
    def allocate(self, num_images: int) -> None:
        """One random unit vector per image, the same on every process (from the seed alone)."""
        generator = torch.Generator().manual_seed(self.seed)
        vectors = torch.randn(num_images, self.dim, generator=generator)
        self.vectors = F.normalize(vectors, dim=1).to(self.vectors)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """A model built without allocate() (readouts, sweeps) takes the stored bank's size."""
        stored = state_dict.get(prefix + "vectors")
        if stored is not None and self.size == 0:
            self.vectors = self.vectors.new_empty(stored.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def draw(self, all_indices: torch.Tensor) -> tuple[torch.Tensor, torch.Generator]:
        """(K negatives for each image of the global batch, (B, K); the step's generator, for
        the method's other draws of this step)."""
        if self.size < 2:
            raise RuntimeError(
                "the memory bank is not allocated: call allocate(num_images) "
                "(the trainer does) or load a checkpoint"
            )
        generator = torch.Generator(device=self.vectors.device)
        generator.manual_seed(self.seed * 1_000_003 + int(self.step))
        return self.draw_more(all_indices, generator), generator

    def draw_more(self, all_indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Another (B, K) draw of negatives from the step's generator (PIRL's second term)."""
        device = self.vectors.device
        shape = (len(all_indices), self.num_negatives)
        if not self.exclude_own:
            return torch.randint(self.size, shape, generator=generator, device=device)
        others = torch.randint(self.size - 1, shape, generator=generator, device=device)
        return others + (others >= all_indices.unsqueeze(1)).long()

    def logits(
        self, embeddings: torch.Tensor, indices: torch.Tensor, negatives: torch.Tensor
    ) -> torch.Tensor:
        """(B, 1 + K) cosines / T of each embedding with its own entry (column 0) and its
        negatives' entries, as the bank is before this step's update; gradient to the
        embeddings only. In at least float32 (as losses.info_nce, for bf16 autocast)."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            dtype = similarity_dtype(embeddings, self.vectors)
            keys = self.vectors[torch.cat([indices.unsqueeze(1), negatives], dim=1)].to(dtype)
            scores = torch.bmm(keys, embeddings.to(dtype).unsqueeze(2)).squeeze(2)
            return scores / self.temperature

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        """The mean over this process's anchors of MODEL.MEMORY_BANK.LOSS (module docstring)."""
        if self.loss_kind == "infonce":
            return F.cross_entropy(
                logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device)
            )
        if not self.z:
            self._estimate_z(logits if self.z_with_own else logits[:, 1:])
        log_p = logits - torch.log(self.z).to(logits.dtype)  # log P(i|v), InsDis Eq. 4 with Z
        log_noise = math.log(self.num_negatives / self.size)  # log(K P_n)
        # log(P + K P_n + eps): the release's eps sits in the denominator only
        log_rest = math.log(self.num_negatives / self.size + self.nce_eps)
        log_denominator = torch.logaddexp(log_p, torch.full_like(log_p, log_rest))
        log_h_own = log_p[:, 0] - log_denominator[:, 0]
        log_not_h_negatives = (log_noise - log_denominator[:, 1:]).sum(dim=1)
        return -(log_h_own + log_not_h_negatives).mean()

    @torch.no_grad()
    def _estimate_z(self, negative_logits: torch.Tensor) -> None:
        """Z = n * the mean of exp(s / T) over the global batch's negatives (and own entries,
        with `z_with_own`; equal batches per process, so the mean of the processes' means)."""
        local = negative_logits.double().exp().mean().reshape(1)
        self.z.fill_(self.size * du.all_gather_cat(local).mean().item())

    @torch.no_grad()
    def update(self, all_indices: torch.Tensor, all_embeddings: torch.Tensor) -> None:
        """v <- normalise(m v + (1 - m) f) for the global batch's images; counts the step."""
        old = self.vectors[all_indices]
        new = self.momentum * old + (1 - self.momentum) * all_embeddings.to(old.dtype)
        self.vectors.index_copy_(0, all_indices, F.normalize(new, dim=1))
        self.step += 1


class MemoryBankMethod(Method):
    """What InsDis and PIRL share around their bank: one encoder (`query_encoder`, moco.Encoder,
    as every model of the project, so the kNN monitor, the readouts and tools/convert.py find its
    backbone), no momentum encoder (the bank is updated in forward, after the loss), the bank
    kept out of DDP's buffer broadcast and allocated when the run's size is known."""

    paper_head = "linear"  # a linear projection to 128-d in both papers

    @classmethod
    def check_cfg(cls, cfg) -> None:
        super().check_cfg(cfg)
        check_memory_bank(cfg)

    def __init__(self, encoder: nn.Module, memory_bank: MemoryBank):
        super().__init__()
        self.query_encoder = encoder
        self.memory_bank = memory_bank
        self.temperature = memory_bank.temperature
        ignore_in_ddp(self)

    @property
    def info_nce_terms(self) -> tuple[str, ...]:
        """The loss's terms with MODEL.MEMORY_BANK.LOSS infonce; NCE's loss is not an InfoNCE
        bound (the log prints no I_NCE)."""
        return self.loss_terms if self.memory_bank.loss_kind == "infonce" else ()

    def num_negatives(self, global_batch_size: int) -> int:
        """K, the bank entries drawn per anchor."""
        return self.memory_bank.num_negatives

    def start_run(self, samples: int, iters_per_epoch: int, total_iters: int) -> None:
        self.memory_bank.allocate(samples)  # one entry per sample, from the seed


def ignore_in_ddp(model: nn.Module, bank_name: str = "memory_bank") -> None:
    """DDP would broadcast every buffer from rank 0 at each forward; the bank (650 MB for
    ImageNet) is kept equal by its own update, so it stays out of that."""
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        model, [f"{bank_name}.{name}" for name in ("vectors", "z", "step")]
    )


def this_process_rows(global_rows: torch.Tensor, local_batch: int) -> torch.Tensor:
    """This process's rows of a tensor drawn for the global batch (rank order)."""
    first = du.get_rank() * local_batch
    return global_rows[first : first + local_batch]
