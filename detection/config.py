"""Detectron2 config keys this project adds."""
from __future__ import annotations


def add_project_config(cfg) -> None:
    # One-line dataset specs registered before training (see detection/datasets.py).
    cfg.DATASETS.REGISTER = []
