"""The user's cache folder for what the project keeps between runs outside any run folder (the
image check's verdicts, downloaded demo objects): $XDG_CACHE_HOME/infomin-det, by default
~/.cache/infomin-det. Nothing in it is needed: deleting it costs only time."""

from __future__ import annotations

import os


def user_cache_dir(*parts: str) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "infomin-det", *parts)
