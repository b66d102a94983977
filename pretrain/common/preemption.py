"""Turn a scheduler's "time is up" signal into a checkpoint at the next iteration boundary.

submitit (slurm/submit.py) answers SLURM's USR2 by requeueing the job and exiting at once, wherever
the training loop was: everything since the last periodic checkpoint would be lost, and a time
slot shorter than start-up plus one checkpoint period would never make progress. While training,
we hold the signal, finish the current iteration, write a checkpoint, then hand the signal to the
handler that was installed (submitit's), which requeues and exits.
"""

from __future__ import annotations

import signal

import torch

from . import distributed as du


class CheckpointBeforeRequeue:
    def __init__(self, signum: int = signal.SIGUSR2):
        self.signum = signum
        self.previous = None
        self.pending = None

    def __enter__(self):
        previous = signal.getsignal(self.signum)
        if callable(previous):  # someone (submitit) handles it: defer to iteration boundaries
            self.previous = previous
            signal.signal(self.signum, self._hold)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(self.signum, self.previous)

    def _hold(self, signum, frame):
        print(f"received signal {signum}: checkpointing at the end of this iteration", flush=True)
        self.pending = (signum, frame)

    def requested(self, device) -> bool:
        """Whether any process got the signal; collective, so every process stops together."""
        flag = float(self.pending is not None)
        if du.is_distributed():
            t = torch.tensor([flag], device=device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            flag = t.item()
        return flag > 0

    def hand_over(self) -> None:
        """After the checkpoint: let the original handler requeue and exit."""
        signum, frame = self.pending or (self.signum, None)
        handler, self.previous = self.previous, None
        signal.signal(self.signum, handler)
        if callable(handler):
            handler(signum, frame)
