import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    """Under pytest-xdist (make test runs one worker per core), each worker and the tools it starts
    get an equal share of the cores, so the workers do not oversubscribe the machine."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        threads = str(max(1, (os.cpu_count() or 1) // int(workers)))
        os.environ.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        import torch

        torch.set_num_threads(int(threads))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cifar10(shared_data) -> Path:
    """CIFAR-10 JPEG class folders, unpacked once into the repository's ignored .cache/."""
    from pretrain.data.archive import unpack_once

    return Path(
        unpack_once(str(shared_data / "cifar10-images.tar.gz"), str(REPO / ".cache" / "cifar10"))
    )


def run_tool(*args: str, cwd: Path = REPO, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run one of the project's command-line tools with this interpreter, as a user would."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n"
            f"--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc


def run_tool_until_killed(*args: str, marker: Path, cwd: Path = REPO, timeout: int = 300) -> None:
    """Start a tool as run_tool does and SIGKILL it as soon as `marker` (e.g. its first checkpoint)
    exists: a crash or a scheduler's hard kill at an arbitrary point after that file."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + timeout
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), f"{' '.join(args)} ended before writing {marker.name}"
