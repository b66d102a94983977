"""Atomic, resumable checkpoints: write to a temp file, fsync, rename; `last_checkpoint` names the
newest complete one, so a kill at any moment leaves the previous checkpoint intact."""

from __future__ import annotations

import glob
import os
import random

import numpy as np
import torch

from ..common.atomic_io import atomic_torch_save, atomic_write_text  # noqa: F401 (callers' import)
from ..common.errors import CheckpointError

POINTER = "last_checkpoint"


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict | torch.Tensor) -> None:
    """Restore what rng_state() captured (a bare tensor: torch's generator alone, as linear
    readout checkpoints stored it before)."""
    if isinstance(state, torch.Tensor):
        torch.set_rng_state(state)
        return
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(output_dir: str, name: str, state: dict, keep_last: int = 2) -> str:
    """Write `state` as OUTPUT_DIR/name, point `last_checkpoint` at it, and delete periodic
    checkpoints (checkpoint_*.pth) beyond the newest `keep_last`."""
    path = os.path.join(output_dir, name)
    atomic_torch_save(state, path)
    atomic_write_text(name, os.path.join(output_dir, POINTER))
    periodic = sorted(glob.glob(os.path.join(output_dir, "checkpoint_*.pth")))
    for old in periodic[:-keep_last] if keep_last > 0 else []:
        if os.path.basename(old) != name:
            os.remove(old)
    return path


def last_checkpoint(output_dir: str) -> str | None:
    pointer = os.path.join(output_dir, POINTER)
    if not os.path.isfile(pointer):
        return None
    with open(pointer) as f:
        path = os.path.join(output_dir, f.read().strip())
    return path if os.path.isfile(path) else None


def load_checkpoint(path: str, map_location="cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:
        raise CheckpointError(f"checkpoint {path}: cannot be read ({err})") from None
