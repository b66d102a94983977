"""A scheduler's USR2 during training: checkpoint at the iteration boundary, then the installed
handler (submitit's, in a SLURM job) runs. The signal is real; the handler here records the call."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from tests.conftest import REPO

SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading
    from pretrain.config import load_cfg
    from pretrain.pretraining import train

    def requeue_handler(signum, frame):  # stands in for submitit's: record, then exit
        open(os.path.join({out!r}, "handler_called"), "w").write("yes")
        sys.exit(3)

    signal.signal(signal.SIGUSR2, requeue_handler)
    threading.Timer(6.0, lambda: os.kill(os.getpid(), signal.SIGUSR2)).start()
    train(load_cfg(opts=["MODEL.ARCH", "resnet18", "MODEL.QUEUE_SIZE", "32", "DATA.CROP_SIZE",
                         "32", "DATA.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "8",
                         "SOLVER.MAX_ITER", "100000", "SOLVER.CHECKPOINT_PERIOD", "100000",
                         "DATA.ROOT", {data!r}, "OUTPUT_DIR", {out!r}]))
""")


@pytest.mark.integration
def test_signal_checkpoints_at_the_iteration_boundary_then_hands_over(cifar10, tmp_path):
    code = SCRIPT.format(out=str(tmp_path), data=str(cifar10 / "test"))
    # Run from the repository root, so `python -c` imports this checkout's packages.
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert (tmp_path / "handler_called").read_text() == "yes"
    with open(tmp_path / "last_checkpoint") as f:
        name = f.read().strip()
    state = torch.load(tmp_path / name, map_location="cpu", weights_only=False)
    # Far from the (never reached) periodic checkpoint: the signal produced this one.
    assert 0 < state["iteration"] < 100000 and name == f"checkpoint_{state['iteration']:08d}.pth"
    assert state["optimizer"]["state"] and "received signal" in proc.stdout
    assert os.path.getsize(tmp_path / name) > 0
