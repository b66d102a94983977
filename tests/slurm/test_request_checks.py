"""slurm/submit.py refuses, before submitting, counts and times SLURM would misread and inputs
that do not exist (slurm/request_checks.py); its --help exits 0."""

import os
import subprocess
import sys

import pytest

from pretrain.common.errors import ConfigError, DatasetError
from slurm import submit
from tests.conftest import REPO

PRETRAIN_CFG = "configs/pretrain/demo_R18_mocov2.yaml"
FRUITS = "configs/detection/small/fruits_nuts_R_18_FPN.yaml"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nodes", "-1"], "--nodes -1: must be at least 1"),
        (["--timeout-min", "0"], r"--timeout-min 0: must be at least 1 \(SLURM reads --time=0"),
        (["--cpus-per-task", "0"], "--cpus-per-task 0: must be at least 1"),
        (["--gpus-per-node", "-2"], "--gpus-per-node -2: must be at least 0"),
        (["--timeout-min", "2", "--signal-delay-s", "120"], "requeue signal must come before"),
    ],
)
def test_bad_counts_and_times_are_refused(tmp_path, args, message):
    with pytest.raises(ConfigError, match=message):
        submit.main(
            [
                "pretrain",
                "--config-file",
                PRETRAIN_CFG,
                *args,
                "--job-dir",
                str(tmp_path),
                "DATA.ROOT",
                str(tmp_path),
                "--dry-run",
            ]
        )


def test_missing_inputs_are_refused_in_a_dry_run(tmp_path, capsys):
    with pytest.raises(DatasetError, match=r"DATA.ROOT \S+no-data: no such file or folder"):
        submit.main(
            [
                "pretrain",
                "--config-file",
                PRETRAIN_CFG,
                "--dry-run",
                "DATA.ROOT",
                str(tmp_path / "no-data"),
            ]
        )
    with pytest.raises(DatasetError, match=r"MODEL.WEIGHTS \S+none.pkl: no such file"):
        submit.main(
            [
                "detection",
                "--config-file",
                FRUITS,
                "--dry-run",
                "MODEL.WEIGHTS",
                str(tmp_path / "none.pkl"),
            ]
        )
    spec = f"name=x format=voc root={tmp_path / 'voc'} split=train"
    with pytest.raises(DatasetError, match=r"DATASETS.REGISTER x root= \S+voc: no such"):
        submit.main(
            ["detection", "--config-file", FRUITS, "--dry-run", "DATASETS.REGISTER", repr([spec])]
        )
    capsys.readouterr()
    assert submit.main(["detection", "--config-file", FRUITS, "--dry-run"]) == 0
    assert "#SBATCH --time=4320" in capsys.readouterr().out


def test_help_exits_zero():
    proc = subprocess.run(
        [sys.executable, "slurm/submit.py", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert (
        proc.returncode == 0
        and "{pretrain,lincls,knn,supervised,finetune,detection,learn_views,sweep}" in proc.stdout
    )
