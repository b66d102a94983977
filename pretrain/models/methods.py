"""MODEL.METHOD: which method's model the config builds. "moco" is MoCo v1/v2 / InfoMin (and CMC
with MODEL.CMC.ENABLED, cmc.py); the others are built here from the same parts: a backbone
(backbone.py), a projection head (heads.py), MoCo's encoder / momentum encoder (moco.py), the
memory bank of InsDis and PIRL (memory_bank.py)."""
from __future__ import annotations

from ..common.errors import ConfigError
from ..common import distributed as du
from .backbone import build_backbone
from .byol import BYOL
from .dino import DINO, DINOHead
from .heads import build_head, build_predictor
from .insdis import InsDis
from .memory_bank import MEMORY_BANK_METHODS, MemoryBank, check_memory_bank
from .mocov3 import MoCoV3
from .moco import Encoder, JigsawHead
from .pirl import PIRL
from .simclr import SimCLR
from .simsiam import SimSiam
from .swav import SwAV

METHODS = ("moco", "simclr", "byol", "simsiam", "mocov3", "insdis", "pirl", "swav", "dino")
# The papers' projection heads where it is not MODEL.HEAD <method>: a linear projection.
_PAPER_HEADS = {"insdis": "linear", "pirl": "linear"}
_WITH_MOMENTUM_ENCODER = ("moco", "byol", "mocov3", "dino")
_ANNEALED_MOMENTUM = ("byol", "mocov3", "dino")
_READS_SMALL_CROPS = ("swav", "dino")  # DATA.MULTI_CROP


def check_method(cfg) -> str:
    """MODEL.METHOD, refused with the settings it cannot run with."""
    m = cfg.MODEL
    if m.METHOD not in METHODS:
        raise ConfigError(f"MODEL.METHOD {m.METHOD!r}: expected one of {', '.join(METHODS)}")
    if m.MOMENTUM_COSINE and m.METHOD not in _ANNEALED_MOMENTUM:
        raise ConfigError(f"MODEL.MOMENTUM_COSINE with MODEL.METHOD {m.METHOD}: only "
                          f"{', '.join(_ANNEALED_MOMENTUM)} anneal their momentum")
    if cfg.DATA.MULTI_CROP.NUM_SMALL and m.METHOD not in _READS_SMALL_CROPS:
        raise ConfigError(f"DATA.MULTI_CROP.NUM_SMALL {cfg.DATA.MULTI_CROP.NUM_SMALL} with "
                          f"MODEL.METHOD {m.METHOD}: only {', '.join(_READS_SMALL_CROPS)} have a "
                          "loss for small crops")
    if m.METHOD == "dino" and m.HEAD != "dino":
        raise ConfigError(f"MODEL.HEAD {m.HEAD} with MODEL.METHOD dino: DINO's loss reads the "
                          "DINO head's K outputs; set MODEL.HEAD dino")
    if m.METHOD in MEMORY_BANK_METHODS:
        check_memory_bank(cfg)
    if m.METHOD != "moco":
        for key, on in (("MODEL.CMC.ENABLED", m.CMC.ENABLED),
                        ("MODEL.JIGSAW.ENABLED", m.JIGSAW.ENABLED and m.METHOD != "pirl")):
            if on:
                raise ConfigError(f"{key} with MODEL.METHOD {m.METHOD}: only moco (and pirl's "
                                  "JigSaw) has it")
        paper_head = _PAPER_HEADS.get(m.METHOD, m.METHOD)
        if m.HEAD != paper_head and du.get_rank() == 0:
            print(f"note: MODEL.HEAD {m.HEAD} with MODEL.METHOD {m.METHOD}; the paper's head is "
                  f"MODEL.HEAD {paper_head}", flush=True)
    return m.METHOD


def build_method(cfg):
    """The model of a MODEL.METHOD other than moco."""
    method, m = check_method(cfg), cfg.MODEL
    backbone, dim = build_backbone(m.ARCH, m.WIDTH, m.STEM)
    if method == "dino":
        d = m.DINO
        head = DINOHead(dim, m.HEAD_HIDDEN_DIM, m.FEAT_DIM, d.OUT_DIM, d.NORM_LAST_LAYER)
        return DINO(Encoder(backbone, head), d.OUT_DIM, m.MOMENTUM, m.MOMENTUM_COSINE,
                    d.STUDENT_TEMP, d.TEACHER_TEMP, d.WARMUP_TEACHER_TEMP,
                    d.WARMUP_TEACHER_TEMP_EPOCHS, d.CENTER_MOMENTUM, d.FREEZE_LAST_LAYER_EPOCHS,
                    d.CLIP_GRAD)
    encoder = Encoder(backbone, build_head(m.HEAD, dim, m.HEAD_HIDDEN_DIM, m.FEAT_DIM))
    if method == "swav":
        s = m.SWAV
        if s.QUEUE_LENGTH % du.get_world_size():
            raise ConfigError(f"MODEL.SWAV.QUEUE_LENGTH {s.QUEUE_LENGTH} is not divisible by "
                              f"the {du.get_world_size()} processes")
        return SwAV(encoder, m.FEAT_DIM, s.NUM_PROTOTYPES, m.TEMPERATURE, s.EPSILON,
                    s.SINKHORN_ITERATIONS, s.FREEZE_PROTOTYPES_EPOCHS,
                    s.QUEUE_LENGTH, s.QUEUE_START_EPOCH)
    if method == "simclr":
        return SimCLR(encoder, m.TEMPERATURE)
    if method == "insdis":
        return InsDis(encoder, MemoryBank.from_cfg(cfg))
    if method == "pirl":  # negatives "excluding image I" (PIRL Sec. 3.1)
        jigsaw = JigsawHead(build_head(m.HEAD, dim, m.HEAD_HIDDEN_DIM, m.FEAT_DIM),
                            m.JIGSAW.GRID ** 2, m.FEAT_DIM)
        return PIRL(encoder, jigsaw, MemoryBank.from_cfg(cfg, exclude_own=True),
                    m.JIGSAW.LOSS_WEIGHT)
    predictor = build_predictor(method, m.FEAT_DIM, m.PREDICTOR_HIDDEN_DIM)
    if method == "simsiam":
        return SimSiam(encoder, predictor, m.TEMPERATURE)
    kind = BYOL if method == "byol" else MoCoV3
    return kind(encoder, predictor, m.FEAT_DIM, m.MOMENTUM, m.MOMENTUM_COSINE, m.TEMPERATURE)
