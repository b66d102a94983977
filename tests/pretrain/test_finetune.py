"""Semi-supervised fine-tuning (pretrain/finetune.py, tools/finetune.py): the labelled fraction
(class-balanced and seeded, or a list of file names), SimCLR's schedule, a run from a checkpoint
format people have that learns, writes its subset and result, and resumes bit for bit after a
scheduler's signal."""

import json
import os
import signal

import pytest
import torch
import torchvision

from pretrain.common.errors import ConfigError, DatasetError
from pretrain.config import load_finetune_cfg
from pretrain.evaluation.data import labelled_folder
from pretrain.evaluation.subsets import balanced_fraction, labelled_subset
from pretrain.finetune import run_finetune
from tests.conftest import run_tool
from tests.helpers import random_resnet


@pytest.fixture(scope="module")
def cifar_test(cifar10):
    return labelled_folder(str(cifar10 / "test"), None)


def labels_of(dataset, indices):
    return [dataset.samples[i][1] for i in indices]


def test_a_percentage_takes_that_share_of_every_class_drawn_with_the_seed(cifar_test):
    one = balanced_fraction(cifar_test, 1.0, seed=0)  # 1000 test images per class
    assert len(one) == 100 and all(labels_of(cifar_test, one).count(c) == 10 for c in range(10))
    assert one == balanced_fraction(cifar_test, 1.0, seed=0)
    assert one != balanced_fraction(cifar_test, 1.0, seed=1)
    ten = balanced_fraction(cifar_test, 10.0, seed=0)
    assert len(ten) == 1000 and set(one) <= set(ten)  # 1% of a seed inside its 10%
    assert len(balanced_fraction(cifar_test, 0.01, seed=0)) == 10  # at least one per class


def test_a_subset_file_names_the_images(cifar_test, cifar10, tmp_path):
    """As class/name here: CIFAR's file names repeat across its class folders (ImageNet's, which
    SimCLR's lists give bare, do not)."""
    root = cifar10 / "test"
    chosen = [os.path.relpath(cifar_test.samples[i][0], root) for i in (3, 1500, 9999)]
    listed = tmp_path / "subset.txt"
    listed.write_text("".join(f"{name}\n" for name in chosen) + "\n")
    subset, names = labelled_subset(cifar_test, str(root), 1.0, 0, str(listed))
    assert names == sorted(chosen) and len(subset) == 3
    listed.write_text("no_such_image.jpg\n" + chosen[0] + "\n")
    with pytest.raises(
        DatasetError,
        match=r"subset.txt: 1 of its 2 images are not in \S+test, "
        "e.g. no_such_image.jpg",
    ):
        labelled_subset(cifar_test, str(root), 1.0, 0, str(listed))
    listed.write_text(os.path.basename(chosen[0]) + "\n")
    with pytest.raises(
        DatasetError,
        match=r"\d+.jpg is in 10 class folders of \S+test; name it "
        r"as class/\d+.jpg",
    ):
        labelled_subset(cifar_test, str(root), 1.0, 0, str(listed))
    with pytest.raises(DatasetError, match="DATA.SUBSET_FILE .*missing.txt: no such file"):
        labelled_subset(cifar_test, str(cifar10 / "test"), 1.0, 0, str(tmp_path / "missing.txt"))


def test_simclrs_protocol_is_the_default_and_bad_fractions_are_refused():
    cfg = load_finetune_cfg()
    solver = cfg.SOLVER
    assert (solver.BATCH_SIZE, solver.BASE_LR * solver.BATCH_SIZE / 256, solver.MOMENTUM) == (
        4096,
        0.8,
        0.9,
    )
    assert solver.NESTEROV and solver.WEIGHT_DECAY == 0.0 and solver.EPOCHS == 60
    assert cfg.DATA.PERCENT == 1.0
    # A whole number for a float key, as people type it, is read as the float.
    typed = load_finetune_cfg(opts=["DATA.PERCENT", "10", "SOLVER.BASE_LR", "1"])
    assert typed.DATA.PERCENT == 10.0 and typed.SOLVER.BASE_LR == 1.0
    with pytest.raises(ConfigError, match=r"DATA.PERCENT 0.0: expected a percentage in \(0, 100\]"):
        load_finetune_cfg(opts=["DATA.PERCENT", "0.0"])


def small(cifar10, weights, out, *opts):
    return load_finetune_cfg(
        opts=[
            "MODEL.ARCH",
            "resnet18",
            "MODEL.WEIGHTS",
            str(weights),
            "DATA.ROOT",
            str(cifar10 / "test"),
            "DATA.VAL_ROOT",
            str(cifar10 / "test"),
            "DATA.VAL_LIMIT",
            "64",
            "DATA.PERCENT",
            "0.5",
            "DATA.CROP_SIZE",
            "32",
            "DATA.NUM_WORKERS",
            "0",
            "SOLVER.BATCH_SIZE",
            "10",
            "SOLVER.EPOCHS",
            "2",
            "LOG_PERIOD",
            "5",
            "OUTPUT_DIR",
            str(out),
            *opts,
        ]
    )  # 50 images: 5 steps an epoch


@pytest.mark.integration
def test_a_fine_tune_stopped_by_a_schedulers_signal_resumes_bit_for_bit(
    cifar10, tmp_path, monkeypatch
):
    """From a torchvision checkpoint (a format convert reads): the whole network trains (the
    backbone moves, not only the classifier), subset.txt and result.json are written, and a run
    stopped by USR2 in its 7th step resumes from the checkpoint the signal wrote and ends with
    the uninterrupted run's weights and metrics."""
    weights = tmp_path / "r18.pth"
    torch.save(random_resnet("resnet18").state_dict(), weights)
    whole = tmp_path / "whole"
    accuracy = run_finetune(small(cifar10, weights, whole))
    subset = (whole / "subset.txt").read_text().split()
    assert len(subset) == 50 and len({name.split("/")[0] for name in subset}) == 10
    result = json.loads((whole / "result.json").read_text())
    assert result["top1"] == accuracy and result["labelled_images"] == 50
    final = torch.load(whole / "model_final.pth")
    start = torch.load(weights)
    assert not torch.equal(final["layer1.0.conv1.weight"], start["layer1.0.conv1.weight"])
    torchvision.models.resnet18(num_classes=10).load_state_dict(final)  # a torchvision model

    real_loss, calls, handed_over = torch.nn.functional.cross_entropy, [], []

    def loss_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            os.kill(os.getpid(), signal.SIGUSR2)
        return real_loss(*args, **kwargs)

    stopped = tmp_path / "stopped"
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", loss_then_signal)
    previous = signal.signal(signal.SIGUSR2, lambda *_: handed_over.append(True))
    try:
        assert run_finetune(small(cifar10, weights, stopped)) is None
    finally:
        signal.signal(signal.SIGUSR2, previous)
    monkeypatch.undo()
    assert handed_over == [True] and (stopped / "checkpoint_00000007.pth").exists()
    assert run_finetune(small(cifar10, weights, stopped), resume=True) == accuracy
    resumed = torch.load(stopped / "model_final.pth")
    assert all(torch.equal(resumed[k], v) for k, v in final.items())

    def rows(folder):
        with open(folder / "metrics.jsonl") as f:
            return [{k: v for k, v in json.loads(line).items() if k != "img_per_s"} for line in f]

    assert rows(stopped) == rows(whole)


@pytest.mark.integration
def test_the_tool_refuses_a_fraction_smaller_than_a_batch(cifar10, tmp_path):
    with pytest.raises(
        AssertionError,
        match="the labelled fraction of .*test holds 50 samples, "
        r"fewer than one batch \(SOLVER.BATCH_SIZE 64\)",
    ):
        run_tool(
            "tools/finetune.py",
            "MODEL.ARCH",
            "resnet18",
            "DATA.ROOT",
            str(cifar10 / "test"),
            "DATA.VAL_ROOT",
            str(cifar10 / "test"),
            "DATA.PERCENT",
            "0.5",
            "SOLVER.BATCH_SIZE",
            "64",
            "OUTPUT_DIR",
            str(tmp_path / "out"),
        )
