"""MODEL.METHOD: which method's model the config builds. "moco" is MoCo v1/v2 / InfoMin (and CMC
with MODEL.CMC.ENABLED, cmc.py); the others are built here from the same parts: a backbone
(backbone.py), a projection head (heads.py), MoCo's encoder / momentum encoder (moco.py), the
memory bank of InsDis and PIRL (memory_bank.py)."""
from __future__ import annotations

from ..common.errors import ConfigError
from ..common import distributed as du
from .backbone import build_backbone
from .byol import BYOL
from .heads import build_head, build_predictor
from .insdis import InsDis
from .memory_bank import MEMORY_BANK_METHODS, MemoryBank, check_memory_bank
from .mocov3 import MoCoV3
from .moco import Encoder, JigsawHead
from .pirl import PIRL
from .simclr import SimCLR
from .simsiam import SimSiam

METHODS = ("moco", "simclr", "byol", "simsiam", "mocov3", "insdis", "pirl")
# The papers' projection heads where it is not MODEL.HEAD <method>: a linear projection.
_PAPER_HEADS = {"insdis": "linear", "pirl": "linear"}
_WITH_MOMENTUM_ENCODER = ("moco", "byol", "mocov3")


def check_method(cfg) -> str:
    """MODEL.METHOD, refused with the settings it cannot run with."""
    m = cfg.MODEL
    if m.METHOD not in METHODS:
        raise ConfigError(f"MODEL.METHOD {m.METHOD!r}: expected one of {', '.join(METHODS)}")
    if m.MOMENTUM_COSINE and m.METHOD not in ("byol", "mocov3"):
        raise ConfigError(f"MODEL.MOMENTUM_COSINE with MODEL.METHOD {m.METHOD}: only byol and "
                          "mocov3 anneal their momentum")
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
    encoder = Encoder(backbone, build_head(m.HEAD, dim, m.HEAD_HIDDEN_DIM, m.FEAT_DIM))
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
