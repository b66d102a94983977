"""What the cluster offers (from sinfo), so impossible requests fail at submission with a clear
message instead of waiting in the queue forever."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from pretrain.common.errors import LaunchError


@dataclass
class Partition:
    name: str
    default: bool
    max_cpus: int  # per node
    max_gpus: int  # per node


def _gpus(gres: str) -> int:
    """'gpu:8', 'gpu:a100:4(S:0-1)', '(null)' -> GPUs per node."""
    counts = [int(m.group(1)) for m in re.finditer(r"gpu(?::[\w-]+)?:(\d+)", gres)]
    return max(counts, default=0)


def partitions() -> dict[str, Partition]:
    if shutil.which("sinfo") is None:
        raise LaunchError(
            "sinfo not found: this machine is not a SLURM submit host "
            "(use --dry-run to see the job script)"
        )
    out = subprocess.run(["sinfo", "-h", "-o", "%P|%c|%G"], capture_output=True, text=True)
    if out.returncode != 0:
        raise LaunchError(f"sinfo failed: {out.stderr.strip()}")
    found: dict[str, Partition] = {}
    for line in out.stdout.splitlines():
        name, cpus, gres = line.strip().split("|")
        default = name.endswith("*")
        name = name.rstrip("*")
        part = found.setdefault(name, Partition(name, default, 0, 0))
        part.max_cpus = max(part.max_cpus, int(re.sub(r"\D", "", cpus) or 0))
        part.max_gpus = max(part.max_gpus, _gpus(gres))
    return found


def check_request(
    partition: str | None, tasks_per_node: int, cpus_per_task: int, gpus_per_node: int
) -> None:
    """Raise LaunchError if no node of the partition can ever run the request."""
    available = partitions()
    if partition:
        if partition not in available:
            raise LaunchError(
                f"unknown partition {partition!r} (the cluster has: "
                f"{', '.join(sorted(available)) or 'none'})"
            )
        part = available[partition]
    else:
        defaults = [p for p in available.values() if p.default]
        if not defaults:
            raise LaunchError("the cluster has no default partition: pass --partition")
        part = defaults[0]
    if gpus_per_node > part.max_gpus:
        raise LaunchError(
            f"--gpus-per-node {gpus_per_node}: nodes of partition "
            f"{part.name!r} have at most {part.max_gpus} GPUs"
        )
    if tasks_per_node * cpus_per_task > part.max_cpus:
        raise LaunchError(
            f"{tasks_per_node} tasks x {cpus_per_task} CPUs per node: nodes "
            f"of partition {part.name!r} have {part.max_cpus} CPUs"
        )
