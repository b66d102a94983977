"""Debian packages installed on demand (the SLURM test cluster's, the demo's Fashion-MNIST), one
install at a time on a machine: processes that ask at once (parallel test workers, two jobs) take
turns on a lock file, since apt-get itself fails at once on a held lock."""

from __future__ import annotations

import fcntl
import os
import subprocess

LOCK = "/tmp/infomin-apt-get.lock"


def apt_get_install(*packages: str, timeout: float = 900) -> str | None:
    """`apt-get update` then `apt-get install -y PACKAGES`, non-interactive; returns None, or
    why it failed (the command and the end of its stderr)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
            if proc.returncode != 0:
                return f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-300:]}"
    return None
