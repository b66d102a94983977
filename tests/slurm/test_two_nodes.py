"""A pretraining job on two SLURM nodes (two slurmd on this machine, tests/slurm/conftest.py):
its tasks on both nodes form one process group, SyncBN reduces across them, and a requeue of the
two-node job resumes exactly."""

import re
import subprocess
import time

import pytest
import torch

from tests.conftest import run_tool
from tests.slurm.test_submit import (
    PRETRAIN_CFG,
    TINY_PRETRAIN,
    final_state,
    submit,
    task_log,
    wait_for,
)

# In the default suite (about 80 s on 2 cores, in the SLURM tests' xdist worker): the only real
# multi-node check.
pytestmark = pytest.mark.integration


def test_a_two_node_job_is_one_process_group_and_resumes_exactly_after_a_requeue(
    two_node_cluster, cifar10, tmp_path
):
    """Signalled (USR2) once it has logged, the job checkpoints, requeues and resumes on both
    nodes, and ends with the weights of two processes trained without interruption: with SyncBN
    and the gathered keys, which only agree if the two nodes reduce together."""
    work = [
        *TINY_PRETRAIN,
        "MODEL.SYNC_BN",
        "True",
        "SOLVER.MAX_ITER",
        "30",
        "SOLVER.CHECKPOINT_PERIOD",
        "100000",
        "DATA.ROOT",
        str(cifar10 / "test"),
    ]
    jobs, run = tmp_path / "jobs", tmp_path / "two_nodes"
    job = submit(
        jobs,
        "pretrain",
        "--config-file",
        PRETRAIN_CFG,
        "--nodes",
        "2",
        "--tasks-per-node",
        "1",
        "--timeout-min",
        "20",
        *work,
        "OUTPUT_DIR",
        str(run),
    )
    nodes = ""
    deadline = time.time() + 300
    while time.time() < deadline:
        nodes = (
            nodes
            or subprocess.run(
                ["squeue", "-h", "-j", job, "-o", "%N"], capture_output=True, text=True
            ).stdout.strip()
        )
        metrics = run / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.5)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    wait_for(job, timeout=900, release_held=True)
    assert "," in nodes or "[" in nodes, nodes  # e.g. "localhost,vm": both nodes ran it
    for task in (0, 1):
        log = task_log(jobs, job, task)
        assert f"[pretrain] task {task}/2" in log and "(restart 1)" in log, log[-2000:]
    resumed_at = [
        int(i) for i in re.findall(r"resumed from .* at iteration (\d+)", task_log(jobs, job, 0))
    ]
    assert resumed_at and 0 < resumed_at[0] < 30
    direct = tmp_path / "direct"
    run_tool(
        "tools/pretrain.py",
        "--config-file",
        PRETRAIN_CFG,
        "--num-processes",
        "2",
        *work,
        "OUTPUT_DIR",
        str(direct),
    )
    requeued, whole = final_state(run), final_state(direct)
    assert requeued["iteration"] == whole["iteration"] == 30
    differ = [k for k, v in whole["model"].items() if not torch.equal(requeued["model"][k], v)]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
