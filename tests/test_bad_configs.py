"""A config file a user got wrong, given to each tool as a user runs it: exit status 2 and one
line on stderr that names the file, never a traceback (the second bad-input round)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration  # tool processes
TOOLS = ["tools/pretrain.py", "detection/train_net.py"]
BCCD = str(REPO / "configs/detection/small/bccd_R_18_C4.yaml")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def assert_one_line(proc: subprocess.CompletedProcess, *expected: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr and lines[-1].startswith("error: "), proc.stderr
    assert all(text in lines[-1] for text in expected), lines[-1]


@pytest.mark.parametrize("tool", TOOLS)
def test_yaml_syntax_error_names_the_file_and_line(tool, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  ARCH: [resnet18\n")
    assert_one_line(run(tool, "--config-file", str(bad)), str(bad), "not valid YAML", "line 2")


@pytest.mark.parametrize("tool", TOOLS)
def test_a_missing_base_names_it(tool, tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: parent.yaml\nSEED: 1\n")
    assert_one_line(
        run(tool, "--config-file", str(child)),
        str(child),
        str(tmp_path / "parent.yaml"),
        "No such file",
    )


def test_a_detection_override_error_blames_the_command_line_not_the_file():
    assert_one_line(
        run("detection/train_net.py", "--config-file", BCCD, "MODEL.NOPE", "1"),
        "command-line override",
        "MODEL.NOPE",
    )


def test_a_missing_detection_weights_file_is_one_line(tmp_path):
    assert_one_line(
        run(
            "detection/train_net.py",
            "--config-file",
            BCCD,
            "MODEL.WEIGHTS",
            str(tmp_path / "nothere.pkl"),
            "OUTPUT_DIR",
            str(tmp_path / "out"),
        ),
        "MODEL.WEIGHTS",
        "nothere.pkl: no such file",
    )


def test_a_flat_folder_given_as_labelled_images_is_one_line(shared_data):
    flat = str(shared_data / "bccd" / "JPEGImages")
    assert_one_line(
        run("tools/knn.py", "--train-root", flat, "--test-root", flat),
        f"labelled image folder {flat}",
        "one subfolder of images per class",
    )


@pytest.mark.parametrize("tool", TOOLS)
def test_a_file_that_is_not_a_config_is_one_line(tool, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert_one_line(run(tool, "--config-file", str(text)), str(text), "not a config file")


@pytest.mark.parametrize(
    "override, expected",
    [
        (("MODEL.HEAD", "bogus"), "MODEL.HEAD 'bogus': expected 'linear', 'mlp'"),
        (("DATA.AUGMENTATION", "bogus"), "DATA.AUGMENTATION 'bogus': expected one of"),
        (("MODEL.BN_SPLITS", "3"), "MODEL.BN_SPLITS 3 does not divide the per-process batch of 8"),
    ],
)
def test_a_bad_pretraining_value_is_one_line(cifar10, tmp_path, override, expected):
    assert_one_line(
        run(
            "tools/pretrain.py",
            "DATA.ROOT",
            str(cifar10 / "test"),
            "OUTPUT_DIR",
            str(tmp_path / "out"),
            "SOLVER.BATCH_SIZE",
            "8",
            "SOLVER.MAX_ITER",
            "1",
            "DATA.CHECK",
            "off",
            *override,
        ),
        expected,
    )
