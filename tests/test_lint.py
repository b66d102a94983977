"""The code base passes the project's linter and formatter (ruff, configured in pyproject.toml), so
the README's test command is the lint and format check CI runs."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache", "."],
        cwd=REPO,
        capture_output=True,
        text=True,
    )


def test_ruff_finds_nothing():
    result = ruff("check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_would_change_nothing():
    # A failure here names the files: run `.venv/bin/ruff format .` and commit the result.
    result = ruff("format", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
