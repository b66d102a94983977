"""Start N local processes (one per GPU, or gloo processes on CPU) that join one process group:
each gets torch.distributed's variables in its environment, as torchrun would set them."""

from __future__ import annotations

import os
import socket
from typing import Callable

import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port nobody listens on now (for a local master, or a test's local services)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(local_rank: int, world_size: int, port: int, fn: Callable, args: tuple) -> None:
    os.environ.update(
        RANK=str(local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    fn(*args)


def launch(fn: Callable, num_processes: int, args: tuple = ()) -> None:
    """Run fn(*args) in `num_processes` processes; in this one if there is only one."""
    if num_processes <= 1:
        fn(*args)
        return
    mp.start_processes(
        _worker,
        args=(num_processes, free_port(), fn, args),
        nprocs=num_processes,
        start_method="spawn",
    )
