"""MODEL.METHOD's model: the registry of methods (method.py's contract) filled by importing every
method's module, and the one builder the engine, the probes and the readouts call."""

from __future__ import annotations

from ..common.errors import ConfigError

# Each module registers its method(s) on import (method.register_method).
from . import amdim, byol, dino, insdis, moco, mocov3, pirl, simclr, simsiam, swav  # noqa: F401
from .method import METHODS, Method


def method_class(cfg) -> type[Method]:
    """The registered class of MODEL.METHOD."""
    name = cfg.MODEL.METHOD
    if name not in METHODS:
        raise ConfigError(f"MODEL.METHOD {name!r}: expected one of {', '.join(METHODS)}")
    return METHODS[name]


def check_method(cfg) -> type[Method]:
    """MODEL.METHOD's class, its settings checked (ConfigError for those it cannot run with)."""
    cls = method_class(cfg)
    cls.check_cfg(cfg)
    cls.note_head(cfg)
    return cls


def build_model(cfg) -> Method:
    """The pretraining model the config asks for: MODEL.METHOD's (moco builds CMC with
    MODEL.CMC.ENABLED)."""
    return check_method(cfg).from_cfg(cfg)
