"""The demo's objects (Fashion-MNIST) on a machine where the user is not root, which is where most
users sit (a cluster login node, a laptop): the data step runs as user nobody (the interpreter
starts as root only to import, then drops to nobody before the step)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

NOBODY = 65534
STEP = """
import os, sys
import torchvision  # imported while root: the interpreter's folder is root's own
from pretrain.demo.synthetic import ensure_fashion_mnist, load_fashion
from pretrain.common.errors import DatasetError
os.setgid({uid}); os.setuid({uid})
assert os.geteuid() != 0
try:
    folder = ensure_fashion_mnist(debian_dir=sys.argv[1], cache_dir=sys.argv[2])
except DatasetError as err:
    print("ERROR", err)
else:
    images, labels = load_fashion("t10k", detection_classes=False)
    print("FOLDER", folder, images.shape[0])
""".format(uid=NOBODY)

pytestmark = [
    pytest.mark.integration,  # a tool process
    pytest.mark.skipif(os.geteuid() != 0, reason="drops from root to nobody"),
]


@pytest.fixture
def shared_tmp():
    """A folder user nobody can reach (pytest's tmp_path is under root's private folder)."""
    folder = Path(tempfile.mkdtemp(prefix="nobody-", dir="/tmp"))
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def data_step(tmp_path, env: dict) -> str:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    os.chmod(home, 0o777)
    proc = subprocess.run(
        [sys.executable, "-c", STEP, str(tmp_path / "no-debian-package"), str(home / "cache")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HOME": str(home), **env},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1]


def write_idx_files(folder: Path, count: int) -> None:
    """Fashion-MNIST's four files in its idx format (as a user would download them), `count`
    images of 28 x 28 per split."""
    folder.mkdir()
    for split in ("train", "t10k"):
        images = np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8)
        header = np.array([2051, count, 28, 28], dtype=">i4").tobytes()
        with gzip.open(folder / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(header + images.tobytes())
        with gzip.open(folder / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(
                np.array([2049, count], dtype=">i4").tobytes()
                + (np.arange(count) % 10).astype(np.uint8).tobytes()
            )
    os.chmod(folder, 0o755)


def test_a_folder_the_user_names_serves_without_root(shared_tmp):
    folder = shared_tmp / "fashion"
    write_idx_files(folder, 12)
    assert data_step(shared_tmp, {"FASHION_MNIST_DIR": str(folder)}) == f"FOLDER {folder} 12"


def test_without_the_package_or_a_folder_it_downloads_or_says_what_to_do(shared_tmp):
    last = data_step(shared_tmp, {"FASHION_MNIST_DIR": ""})
    if last.startswith("FOLDER"):  # a machine with network: torchvision's download
        assert last.endswith("FashionMNIST/raw 10000")
    else:
        assert last.startswith("ERROR Fashion-MNIST (the demo's objects) is not on this machine")
        assert "FASHION_MNIST_DIR" in last and "apt-get install dataset-fashion-mnist" in last
