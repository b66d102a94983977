"""Folders built once into a cache, atomically: filled in a staging folder beside the target and
renamed into place, so a killed build leaves nothing half-made and the next run builds again.
Processes that build the same folder at once (parallel test workers, two jobs sharing a cache)
take turns on a lock file beside it: the first builds, the others find it complete.
Used by both stages (unpacked image archives, synthetic detection sets, factor-view datasets)."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from typing import Callable

DONE_MARKER = ".complete"


def build_once(dest: str, fill: Callable[[str], None]) -> str:
    """Run fill(staging_folder) and move the result to `dest`, unless a complete `dest` exists."""
    if os.path.exists(os.path.join(dest, DONE_MARKER)):
        return dest
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    lock_path = os.path.join(parent, f".{os.path.basename(os.path.abspath(dest))}.lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if os.path.exists(os.path.join(dest, DONE_MARKER)):  # another process built it meanwhile
            return dest
        staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
        try:
            fill(staging)
            open(os.path.join(staging, DONE_MARKER), "w").close()
            if os.path.exists(dest):
                shutil.rmtree(dest)
            os.replace(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest
