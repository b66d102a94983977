"""detection/train_net.py's output folder: a run's folder is refused unless --resume or --force
(also after the KEY VALUE pairs), the Ctrl-C line names the checkpoint to resume from, log.txt is
plain text, and a run says what it found and what it wrote."""

import re

import pytest

from detection import train_net
from detection.output_folder import resume_hint
from pretrain.common.errors import OutputDirError
from tests.conftest import REPO

BCCD = str(REPO / "configs/detection/small/bccd_R_18_C4.yaml")
FRUITS = str(REPO / "configs/detection/small/fruits_nuts_R_18_FPN.yaml")
# One CPU iteration of Mask R-CNN R18-FPN, no evaluation.
ONE_STEP = [
    "SOLVER.MAX_ITER",
    "1",
    "SOLVER.WARMUP_ITERS",
    "0",
    "SOLVER.STEPS",
    "()",
    "TEST.PRECISE_BN.ENABLED",
    "False",
    "DATASETS.TEST",
    "()",
    "DATALOADER.NUM_WORKERS",
    "0",
    "INPUT.MIN_SIZE_TRAIN",
    "(160,)",
]


def finished_run(folder):
    folder.mkdir()
    (folder / "model_final.pth").write_bytes(b"weights")
    (folder / "last_checkpoint").write_text("model_final.pth")
    (folder / "metrics.json").write_text('{"iteration": 99}\n')


def test_a_finished_runs_folder_is_refused_before_any_process_starts(shared_data, tmp_path):
    finished_run(tmp_path / "run")
    with pytest.raises(
        OutputDirError,
        match=r"OUTPUT_DIR .*run already holds a run "
        r"\(last_checkpoint, metrics.json, model_final.pth\)",
    ):
        train_net.cli(["--config-file", BCCD, "OUTPUT_DIR", str(tmp_path / "run")])
    assert (tmp_path / "run" / "metrics.json").read_text() == '{"iteration": 99}\n'
    assert not (tmp_path / "run" / "config.yaml").exists()


@pytest.mark.parametrize("flag", ["--resume", "--force"])
def test_resume_or_force_accepted_before_or_after_the_pairs(shared_data, tmp_path, flag):
    finished_run(tmp_path / "run")
    for argv in (
        ["--config-file", BCCD, flag, "OUTPUT_DIR", str(tmp_path / "run")],
        ["--config-file", BCCD, "OUTPUT_DIR", str(tmp_path / "run"), flag],
    ):
        args = train_net.parse_args(argv)
        train_net.setup(args)
        assert args.folder_state == {"--resume": "resume", "--force": "fresh"}[flag]
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "Running with full config" in log and "\x1b[" not in log  # pygments colours stripped


def test_ctrl_c_hint_names_the_last_checkpoint(tmp_path):
    assert "no checkpoint was written" in resume_hint(str(tmp_path))
    finished_run(tmp_path / "run")
    assert resume_hint(str(tmp_path / "run")) == (
        f"the last checkpoint is {tmp_path / 'run' / 'model_final.pth'}: rerun the same command "
        "with --resume"
    )


def test_one_step_run_prints_its_start_and_end_lines(shared_data, tmp_path):
    out = tmp_path / "run"
    train_net.main(
        train_net.parse_args(["--config-file", FRUITS, "OUTPUT_DIR", str(out), *ONE_STEP])
    )
    log = (out / "log.txt").read_text()
    start = re.search(
        r"detection: (\d+) images \(DATASETS.TRAIN fruits_nuts_train\), cpu x 1 "
        r"process, batch 2, lr 0.005, 1 iteration, output \S+run \(fresh\)",
        log,
    )
    assert start and int(start.group(1)) == 14  # 18 images, a quarter held out
    # No evaluation (DATASETS.TEST empty): no metrics file claimed.
    assert (
        f"wrote {out / 'model_final.pth'}; next: python detection/compare.py "
        f"--run LABEL={out}" in log
    )
    assert "\x1b[" not in log


def test_resume_of_a_run_with_another_seed_is_refused_untouched(shared_data, tmp_path):
    run = tmp_path / "run"
    train_net.setup(
        train_net.parse_args(["--config-file", BCCD, "OUTPUT_DIR", str(run), "SEED", "1"])
    )
    saved = (run / "config.yaml").read_text()
    with pytest.raises(
        OutputDirError,
        match=r"holds a run with SEED 1, not 2: --resume "
        "continues only the same run",
    ):
        train_net.cli(["--config-file", BCCD, "OUTPUT_DIR", str(run), "SEED", "2", "--resume"])
    assert (run / "config.yaml").read_text() == saved


def test_a_fresh_folder_that_a_data_check_or_a_failed_start_wrote_into_is_not_refused(
    shared_data, tmp_path
):
    """The regression of the second bad-input round: the data check's bad_images.txt (or a
    failed start's config.yaml and log.txt) made a fresh folder "a run"."""
    from detection.output_folder import prepare_detection_output

    out = tmp_path / "run"
    out.mkdir()
    for name in ("bad_images.txt", "config.yaml", "log.txt", "log.txt.rank1"):
        (out / name).write_text("written before the first step\n")
    args = train_net.parse_args(["--config-file", BCCD, "OUTPUT_DIR", str(out)])
    assert prepare_detection_output(train_net.load_detection_cfg(BCCD, args.opts), args) == "fresh"
    (out / "metrics.json").write_text('{"iteration": 1}\n')
    with pytest.raises(OutputDirError, match="already holds a run"):
        prepare_detection_output(train_net.load_detection_cfg(BCCD, args.opts), args)


@pytest.mark.integration
def test_a_diverging_detection_run_is_one_line_naming_what_to_do(shared_data, tmp_path):
    """Detectron2's FloatingPointError on a NaN loss, as one line and exit status 2."""
    import subprocess
    import sys

    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "detection/train_net.py",
            "--config-file",
            FRUITS,
            "OUTPUT_DIR",
            str(out),
            *ONE_STEP[:1],
            "3",
            *ONE_STEP[2:],
            "SOLVER.BASE_LR",
            "1e30",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    # Detectron2 finds it in the loss or in the predicted boxes, whichever comes first
    assert last.startswith("error: detection training diverged: ")
    assert "Lower SOLVER.BASE_LR" in last and "--force" in last
    assert "Traceback" not in proc.stderr
