"""The image check's verdicts, kept between runs in the user's cache
(~/.cache/infomin-det/image_checks/, one file per image root): a verdict holds while its file's
stamp (size and modification time; for a pack, its data file's) is the same and it was reached at
least as deep as the check now asked for. So a rerun, a resume into a new folder or another
experiment on the same images starts without reading them again, and a file that changed is
checked again. A cache that cannot be read or written costs time, never a result."""

from __future__ import annotations

import hashlib
import json
import os

from ..common.atomic_io import atomic_write_text
from ..common.user_cache import user_cache_dir

CACHE_FORMAT = "infomin-det/image-checks/v1"


def cache_path(root: str) -> str:
    name = hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:20]
    return user_cache_dir("image_checks", f"{name}.json")


def load_verdicts(root: str) -> dict[str, list]:
    """{image key: [stamp, depth, problem or None]} of earlier checks of `root`'s images."""
    try:
        with open(cache_path(root)) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        return {}
    if not isinstance(cached, dict) or cached.get("format") != CACHE_FORMAT:
        return {}
    verdicts = cached.get("verdicts")
    return verdicts if isinstance(verdicts, dict) else {}


def save_verdicts(root: str, new: dict[str, list]) -> None:
    """Adds `new` verdicts to the cache of `root` (merged with what another run may have written
    meanwhile; written atomically)."""
    if not new:
        return
    verdicts = {**load_verdicts(root), **new}
    text = json.dumps(
        {"format": CACHE_FORMAT, "root": os.path.abspath(root), "verdicts": verdicts},
        separators=(",", ":"),
    )
    try:
        os.makedirs(os.path.dirname(cache_path(root)), exist_ok=True)
        atomic_write_text(text, cache_path(root))
    except OSError:
        pass  # a read-only or full home: the next run checks again
