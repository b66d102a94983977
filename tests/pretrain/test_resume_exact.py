"""A supervised baseline or a linear readout killed (SIGKILL) after a checkpoint and resumed
reproduces the uninterrupted run bit for bit: the same metrics rows, none repeated, the same
weights. (Pretraining's: tests/pretrain/test_distributed.py.)"""

import json
import os
import signal

import pytest
import torch

from pretrain.config import load_lincls_cfg, load_supervised_cfg
from pretrain.evaluation.linear import run_linear_readout
from pretrain.supervised import train_supervised
from tests.conftest import run_tool_until_killed

# Each kills a tool process (tools/supervised.py, tools/lincls.py): not for `make test-fast`.
pytestmark = pytest.mark.integration

TIMING = {"img_per_s"}  # the only numbers that may differ


def small(cifar10, *opts):
    """ResNet-18 on 32 px CIFAR-10 test images, batches of 16, validated on 16 images."""
    return [
        "MODEL.ARCH",
        "resnet18",
        "DATA.ROOT",
        str(cifar10 / "test"),
        "DATA.VAL_ROOT",
        str(cifar10 / "test"),
        "DATA.VAL_LIMIT",
        "16",
        "DATA.CROP_SIZE",
        "32",
        "SOLVER.BATCH_SIZE",
        "16",
        "DATA.NUM_WORKERS",
        "0",
        *opts,
    ]


def rows(folder):
    with open(folder / "metrics.jsonl") as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


def whole_and_resumed(tmp_path, tool, run, load, opts, marker):
    """Folders of the run uninterrupted (in this process) and of the run killed in `tool` after
    it wrote `marker`, then resumed here."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run(load(opts=[*opts, "OUTPUT_DIR", str(whole)]))
    run_tool_until_killed(tool, *opts, "OUTPUT_DIR", str(killed), marker=killed / marker)
    assert sorted(p.name for p in killed.glob("checkpoint_*.pth")) != sorted(
        p.name for p in whole.glob("checkpoint_*.pth")
    ), "ended before it could be killed"
    run(load(opts=[*opts, "OUTPUT_DIR", str(killed)]), resume=True)
    return whole, killed


def test_a_killed_supervised_run_resumes_bit_for_bit(cifar10, tmp_path):
    opts = small(
        cifar10,
        "DATA.LIMIT",
        "96",
        "SOLVER.MAX_ITER",
        "14",  # 6 batches an epoch
        "SOLVER.CHECKPOINT_PERIOD",
        "4",
        "LOG_PERIOD",
        "1",
    )
    whole, killed = whole_and_resumed(
        tmp_path,
        "tools/supervised.py",
        train_supervised,
        load_supervised_cfg,
        opts,
        "checkpoint_00000004.pth",
    )
    assert [r["iteration"] for r in rows(killed)] == [*range(1, 15), 14]  # the last: val_top1
    assert rows(killed) == rows(whole)
    a, b = (torch.load(f / "model_final.pth") for f in (whole, killed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_killed_linear_readout_resumes_bit_for_bit(cifar10, tmp_path):
    opts = small(cifar10, "DATA.LIMIT", "64", "SOLVER.EPOCHS", "5", "SOLVER.MILESTONES", "(2,)")
    whole, killed = whole_and_resumed(
        tmp_path,
        "tools/lincls.py",
        run_linear_readout,
        load_lincls_cfg,
        opts,
        "checkpoint_00000008.pth",
    )
    assert [r["epoch"] for r in rows(killed)] == [1, 2, 3, 4, 5]
    assert rows(killed) == rows(whole)
    # 4 batches an epoch: checkpoints are named by iteration, the last at 5 x 4.
    a, b = (
        torch.load(f / "checkpoint_00000020.pth", weights_only=False)["classifier"]
        for f in (whole, killed)
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_linear_readout_stopped_by_a_schedulers_signal_mid_epoch_resumes_bit_for_bit(
    cifar10, tmp_path, monkeypatch
):
    """USR2 during the 6th step (epoch 2 of 3, 4 steps an epoch): a checkpoint at step 6, in the
    middle of an epoch, the signal handed on (submitit would requeue); the rerun resumes there
    and reports epoch 2 and 3 as the uninterrupted run did."""
    opts = small(cifar10, "DATA.LIMIT", "64", "SOLVER.EPOCHS", "3", "SOLVER.MILESTONES", "(2,)")
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    accuracy = run_linear_readout(load_lincls_cfg(opts=[*opts, "OUTPUT_DIR", str(whole)]))
    real_loss, calls, handed_over = torch.nn.functional.cross_entropy, [], []

    def loss_then_signal(*args, **kwargs):  # the readout's step computes one loss
        calls.append(1)
        if len(calls) == 6:
            os.kill(os.getpid(), signal.SIGUSR2)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", loss_then_signal)
    previous = signal.signal(signal.SIGUSR2, lambda *_: handed_over.append(True))
    try:
        assert run_linear_readout(load_lincls_cfg(opts=[*opts, "OUTPUT_DIR", str(stopped)])) is None
    finally:
        signal.signal(signal.SIGUSR2, previous)
    monkeypatch.undo()
    assert handed_over == [True]
    assert torch.load(stopped / "checkpoint_00000006.pth", weights_only=False)["epoch"] == 1
    assert (
        run_linear_readout(load_lincls_cfg(opts=[*opts, "OUTPUT_DIR", str(stopped)]), resume=True)
        == accuracy
    )
    assert [r["epoch"] for r in rows(stopped)] == [1, 2, 3] and rows(stopped) == rows(whole)
    a, b = (
        torch.load(f / "checkpoint_00000012.pth", weights_only=False)["classifier"]
        for f in (whole, stopped)
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
