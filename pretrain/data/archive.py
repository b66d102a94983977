"""Unpack an image archive once into a cache folder, atomically (a killed unpack leaves nothing)."""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile


def unpack_once(archive: str, dest: str) -> str:
    """Extract `archive` (.tar / .tar.gz) into `dest` unless a complete copy is already there."""
    done_marker = os.path.join(dest, ".complete")
    if os.path.exists(done_marker):
        return dest
    if not os.path.isfile(archive):
        raise SystemExit(f"error: archive {archive}: no such file")
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        open(os.path.join(staging, ".complete"), "w").close()
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
