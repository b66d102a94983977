"""Image archives unpacked once into a cache (pretrain.common.build_once: atomically, so a killed
unpack leaves nothing half-made)."""

from __future__ import annotations

import os
import tarfile

from ..common.build_once import DONE_MARKER, build_once  # noqa: F401 (DONE_MARKER: callers)
from ..common.errors import DatasetError


def unpack_once(archive: str, dest: str) -> str:
    """Extract `archive` (.tar / .tar.gz) into `dest` unless a complete copy is already there."""
    if not os.path.exists(os.path.join(dest, DONE_MARKER)) and not os.path.isfile(archive):
        raise DatasetError(f"archive {archive}: no such file")

    def extract(staging: str) -> None:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")

    return build_once(dest, extract)
