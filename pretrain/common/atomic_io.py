"""Atomic file writes: to `PATH.tmp.<pid>`, fsync, rename over PATH. A kill at any moment leaves
either the old file or the new one, never half of one; the temp file it may leave is removed at the
next start (output_dir.remove_stale_temp_files)."""

from __future__ import annotations

import os

import torch


def _atomic_write(path: str, write, mode: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_torch_save(obj, path: str) -> None:
    _atomic_write(path, lambda f: torch.save(obj, f), "wb")


def atomic_write_text(text: str, path: str) -> None:
    _atomic_write(path, lambda f: f.write(text), "w")
