"""The method contract: what a pretraining method (MODEL.METHOD) is to the rest of the project.

A method is an `nn.Module` subclass of `Method` registered under its MODEL.METHOD name
(`@register_method("byol")`). The engine, the readouts, the probes and tools/convert.py talk to
it only through what this class states; none of them asks a method for an attribute it might
not have. What a method declares:

- `views`: what one training step feeds `forward`, per sample (VIEWS_* below); the data pipeline
  builds exactly that.
- `forward(*views) -> StepOutput`: the loss to minimise, logits for the log's accuracy (positive
  in column 0), a named breakdown of the loss (`terms`, detached) and the pair of
  representations the ER monitor measures (`er`: entropy, reconstruction and I_ER are logged
  for every method, entropy_reconstruction.py).
- `info_nce_terms`: the names in `terms` that are InfoNCE losses against `num_negatives(B)`
  negatives; the log's I_NCE = log(K + 1) - their mean is printed for those methods only (a
  method without negatives has no such bound to print).
- `start_run(samples, iters_per_epoch, total_iters)`: the run's length and data size, for the
  schedules counted in epochs or steps and for a memory bank's one entry per sample.
- `before_optimizer_step()` (only where `adjusts_gradients`: freezing, clipping; the gradients
  are unscaled first) and `after_optimizer_step()` (EMA targets, step counters).
- `readout_backbone(cfg)`: the network the kNN / linear readouts and tools/convert.py encode
  images with.
- `encode_keys(images)`: keys for the fresh-key probes and the held-out I_NCE.
- `check_cfg(cfg)`: the settings it refuses, as ConfigError, before anything is built;
  `from_cfg(cfg)`: the model.
- Its checkpoint is `state_dict()`: everything a resumed run needs besides the optimizer
  (encoders, queues, banks, step counters in buffers).

Shared parts (the EMA encoder pair of moco.py, the memory bank, the queues, the prototypes) are
components a method holds."""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import torch
import torch.nn as nn

from ..common.errors import ConfigError
from ..common import distributed as du
from ..data import inputs
from ..entropy_reconstruction import ERPair

# What one step feeds forward(), per sample (data/inputs.py: the data pipeline builds from them).
VIEWS_PAIR = inputs.PAIR
VIEWS_PAIR_JIGSAW = inputs.PAIR_JIGSAW
VIEWS_INDEXED = inputs.INDEXED
VIEWS_INDEXED_JIGSAW = inputs.INDEXED_JIGSAW
VIEWS_MULTI_CROP = inputs.MULTI_CROP
VIEWS_CHANNEL_GROUPS = inputs.CHANNEL_GROUPS


class StepOutput(NamedTuple):
    loss: torch.Tensor  # what backward() takes
    logits: torch.Tensor  # positive in column 0: the log's accuracy (argmax == 0)
    terms: dict  # name -> detached scalar: the loss's parts, logged as loss/<name>
    # The two sides one view's representation is reconstructed from and into, for the log's
    # entropy, reconstruction and I_ER (entropy_reconstruction.py): every method shows one.
    er: ERPair | None = None


class Method(nn.Module):
    name: ClassVar[str] = ""  # set by register_method
    views: ClassVar[str] = VIEWS_PAIR
    info_nce_terms: ClassVar[tuple[str, ...]] = ()
    adjusts_gradients: ClassVar[bool] = False
    has_er_variant: ClassVar[bool] = False  # MODEL.ER.OBJECTIVE applies (the paper's ER variants)
    anneals_momentum: ClassVar[bool] = False  # MODEL.MOMENTUM_COSINE applies
    # MODEL.HEAD of the paper ("": MODEL.METHOD's own name; None: several papers, no note)
    paper_head: ClassVar[str | None] = ""

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def check_cfg(cls, cfg) -> None:
        """Settings this method cannot run with; subclasses add theirs (and call this)."""
        m = cfg.MODEL
        if m.MOMENTUM_COSINE and not cls.anneals_momentum:
            raise ConfigError(
                f"MODEL.MOMENTUM_COSINE with MODEL.METHOD {m.METHOD}: only "
                f"{', '.join(n for n, c in METHODS.items() if c.anneals_momentum)} "
                "anneal their momentum"
            )
        if cfg.DATA.MULTI_CROP.NUM_SMALL and cls.views != VIEWS_MULTI_CROP:
            multi_crop = ", ".join(n for n, c in METHODS.items() if c.views == VIEWS_MULTI_CROP)
            raise ConfigError(
                f"DATA.MULTI_CROP.NUM_SMALL {cfg.DATA.MULTI_CROP.NUM_SMALL} with "
                f"MODEL.METHOD {m.METHOD}: only {multi_crop}"
                " have a loss for small crops"
            )
        if m.CMC.ENABLED and cls.name != "moco":
            raise ConfigError(
                f"MODEL.CMC.ENABLED with MODEL.METHOD {m.METHOD}: CMC is built on "
                "moco's branches; set MODEL.METHOD moco"
            )
        if m.ER.KAPPA <= 0:
            raise ConfigError(
                f"MODEL.ER.KAPPA {m.ER.KAPPA}: the von Mises-Fisher concentration "
                "must be positive (the release's default is 10)"
            )
        if m.ER.OBJECTIVE and not cls.has_er_variant:
            raise ConfigError(
                f"MODEL.ER.OBJECTIVE with MODEL.METHOD {m.METHOD}: only "
                f"{', '.join(n for n, c in METHODS.items() if c.has_er_variant)} "
                "have an ER variant"
            )
        if m.JIGSAW.ENABLED and cls.views not in (VIEWS_PAIR_JIGSAW, VIEWS_INDEXED_JIGSAW):
            raise ConfigError(
                f"MODEL.JIGSAW.ENABLED with MODEL.METHOD {m.METHOD}: only moco "
                "(InfoMin's branch) and pirl have a JigSaw loss"
            )

    @classmethod
    def from_cfg(cls, cfg) -> "Method":
        raise NotImplementedError(f"{cls.__name__}.from_cfg")

    @classmethod
    def note_head(cls, cfg) -> None:
        """A one-line note where MODEL.HEAD is not the paper's head for this method."""
        if cls.paper_head is None:
            return
        paper = cls.paper_head or cls.name
        if cfg.MODEL.HEAD != paper and du.get_rank() == 0:
            print(
                f"note: MODEL.HEAD {cfg.MODEL.HEAD} with MODEL.METHOD {cls.name}; the paper's "
                f"head is MODEL.HEAD {paper}",
                flush=True,
            )

    # -- training ------------------------------------------------------------------------------
    def num_negatives(self, global_batch_size: int) -> int:
        """Negatives per InfoNCE anchor (0: the method has none)."""
        return 0

    def start_run(self, samples: int, iters_per_epoch: int, total_iters: int) -> None:
        """Called once the run's data size and length are known, before a checkpoint loads."""

    def before_optimizer_step(self) -> None:
        """Between backward and the step, gradients unscaled (only with `adjusts_gradients`)."""

    def after_optimizer_step(self) -> None:
        """After each optimizer step."""

    # -- reading a trained model ----------------------------------------------------------------
    def readout_backbone(self, cfg) -> nn.Module:
        """What the readouts and tools/convert.py encode images with."""
        return self.query_encoder.backbone

    @torch.no_grad()
    def encode_keys(self, images: torch.Tensor) -> torch.Tensor:
        """Keys for the fresh-key probes: by default the (only) encoder's embeddings."""
        return self.query_encoder(images)

    @property
    def queue_size(self) -> int:
        """Stored negatives the fresh-key probe can score against (0: none)."""
        return 0

    # Buffers older checkpoints of the method hold and it no longer has (dropped on load).
    legacy_keys: ClassVar[tuple[str, ...]] = ()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if self.legacy_keys:
            state_dict = {k: v for k, v in state_dict.items() if k not in self.legacy_keys}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


METHODS: dict[str, type[Method]] = {}


def register_method(name: str):
    """Class decorator: the method of MODEL.METHOD `name`."""

    def register(cls: type[Method]) -> type[Method]:
        if name in METHODS:
            raise ValueError(f"MODEL.METHOD {name!r} is registered twice")
        cls.name = name
        METHODS[name] = cls
        return cls

    return register
