"""MODEL.METHOD: which method's model the config builds. "moco" is MoCo v1/v2 / InfoMin (and CMC
with MODEL.CMC.ENABLED, cmc.py); the others are built here from the same parts: a backbone
(backbone.py), a projection head (heads.py), MoCo's encoder / momentum encoder (moco.py)."""
from __future__ import annotations

from ..common.errors import ConfigError
from ..common import distributed as du
from .backbone import build_backbone
from .byol import BYOL
from .heads import build_head, build_predictor
from .mocov3 import MoCoV3
from .moco import Encoder
from .simclr import SimCLR
from .simsiam import SimSiam

METHODS = ("moco", "simclr", "byol", "simsiam", "mocov3")
_WITH_MOMENTUM_ENCODER = ("moco", "byol", "mocov3")


def check_method(cfg) -> str:
    """MODEL.METHOD, refused with the settings it cannot run with."""
    m = cfg.MODEL
    if m.METHOD not in METHODS:
        raise ConfigError(f"MODEL.METHOD {m.METHOD!r}: expected one of {', '.join(METHODS)}")
    if m.MOMENTUM_COSINE and m.METHOD not in ("byol", "mocov3"):
        raise ConfigError(f"MODEL.MOMENTUM_COSINE with MODEL.METHOD {m.METHOD}: only byol and "
                          "mocov3 anneal their momentum")
    if m.METHOD != "moco":
        for key, on in (("MODEL.CMC.ENABLED", m.CMC.ENABLED),
                        ("MODEL.JIGSAW.ENABLED", m.JIGSAW.ENABLED)):
            if on:
                raise ConfigError(f"{key} with MODEL.METHOD {m.METHOD}: only moco has it")
        if m.HEAD != m.METHOD and du.get_rank() == 0:
            print(f"note: MODEL.HEAD {m.HEAD} with MODEL.METHOD {m.METHOD}; the paper's head is "
                  f"MODEL.HEAD {m.METHOD}", flush=True)
    return m.METHOD


def build_method(cfg):
    """The model of a MODEL.METHOD other than moco."""
    method, m = check_method(cfg), cfg.MODEL
    backbone, dim = build_backbone(m.ARCH, m.WIDTH, m.STEM)
    encoder = Encoder(backbone, build_head(m.HEAD, dim, m.HEAD_HIDDEN_DIM, m.FEAT_DIM))
    if method == "simclr":
        return SimCLR(encoder, m.TEMPERATURE)
    predictor = build_predictor(method, m.FEAT_DIM, m.PREDICTOR_HIDDEN_DIM)
    if method == "simsiam":
        return SimSiam(encoder, predictor, m.TEMPERATURE)
    kind = BYOL if method == "byol" else MoCoV3
    return kind(encoder, predictor, m.FEAT_DIM, m.MOMENTUM, m.MOMENTUM_COSINE, m.TEMPERATURE)
