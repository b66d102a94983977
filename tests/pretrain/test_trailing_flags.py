"""Switches after the KEY VALUE pairs (pretrain/common/cli.py), in the tools that use them, and
the Ctrl-C line that names where to resume."""

import pytest

from pretrain.common.cli import EXIT_INTERRUPTED, pull_flags, run_entry_point, set_interrupted_hint
from tests.conftest import REPO

BCCD = str(REPO / "configs/detection/small/bccd_R_18_C4.yaml")


def test_pull_flags_keeps_the_pairs_in_order():
    opts, found = pull_flags(
        ["SEED", "1", "--resume", "OUTPUT_DIR", "x", "--force"],
        ("--resume", "--force", "--eval-only"),
    )
    assert opts == ["SEED", "1", "OUTPUT_DIR", "x"] and found == {"--resume", "--force"}


@pytest.mark.parametrize(
    "argv",
    [
        ["--config-file", BCCD, "--resume", "SEED", "1"],
        ["--config-file", BCCD, "SEED", "1", "--resume"],
    ],
)
def test_train_net_takes_resume_anywhere(argv):
    from detection.train_net import parse_args

    args = parse_args(argv)
    assert args.resume and not args.force and args.opts == ["SEED", "1"]


def test_submit_takes_dry_run_anywhere():
    from slurm.submit import parse_args

    args = parse_args(["pretrain", "--config-file", "c.yaml", "SEED", "1", "--dry-run"])
    assert args.dry_run and not args.wait and args.opts == ["SEED", "1"]


def test_ctrl_c_names_the_registered_resume_point(capsys):
    def interrupted():
        raise KeyboardInterrupt

    set_interrupted_hint(lambda: "the last checkpoint is out/model_0000099.pth")
    try:
        with pytest.raises(SystemExit) as exit_info:
            run_entry_point(interrupted)
    finally:
        set_interrupted_hint("")
    assert exit_info.value.code == EXIT_INTERRUPTED
    assert capsys.readouterr().err == "interrupted; the last checkpoint is out/model_0000099.pth\n"


def test_pretrain_takes_resume_after_the_pairs():
    from pretrain.commands.pretrain import parse_args

    args = parse_args(["SEED", "1", "--resume", "--check-data"])
    assert args.resume and args.check_data and not args.force and args.opts == ["SEED", "1"]


def test_a_full_disk_is_one_line_and_other_os_errors_stay_tracebacks(capsys):
    import errno
    import os

    def full_disk():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "out/checkpoint_00000020.pth")

    with pytest.raises(SystemExit) as exit_info:
        run_entry_point(full_disk)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: out/checkpoint_00000020.pth: No space left on device")
    assert err.count("\n") == 1

    def a_bug():
        raise OSError(errno.EBADF, "Bad file descriptor")

    with pytest.raises(OSError):  # not the user's to fix: the traceback stays
        run_entry_point(a_bug)
