"""Install Detectron2 into the current Python environment, choosing the best build available.

Order (first that works wins):
  1. an importable detectron2 already present (e.g. the official build from source on a cluster,
     with its compiled CUDA ops) is kept as it is;
  2. where github.com answers, the official source build (compiles `detectron2._C`);
  3. the registry fallback: the `pb1-detectron2==0.6` sdist, which holds the official v0.6 Python
     sources without their C++ files. We repackage those Python sources as a pure-Python wheel
     (cached under .cache/wheels) and install it; `detection.compat` then supplies the missing
     `detectron2._C` with a placeholder that names the op whenever one is used.

Run with the interpreter of the target environment:
`.venv/bin/python tools/install_detectron2.py`.
Set D2_BUILD=registry to skip the source attempt, D2_BUILD=source to insist on it.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import urllib.parse
import urllib.request

OFFICIAL_REPO = "https://github.com/facebookresearch/detectron2.git"
REGISTRY_PROJECT = "pb1-detectron2"
REGISTRY_FILE = "pb1-detectron2-0.6.tar.gz"
REGISTRY_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
PYONLY_VERSION = "0.6+pyonly"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEEL_CACHE = os.path.join(REPO_ROOT, ".cache", "wheels")
SDIST_CACHE = os.path.join(REPO_ROOT, ".cache", "detectron2")


class InstallError(RuntimeError):
    """Detectron2 cannot be fetched or installed as pinned; main() prints it in one line.
    (Not pretrain.common.errors: this script runs before the project is installed.)"""


# Runtime dependencies of detectron2 v0.6 (its setup.py), minus the ones only its caffe2 export and
# LazyConfig pretty-printer need (black==21.4b2 pins an old formatter, future, pydot).
PYONLY_REQUIRES = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "omegaconf>=2.1",
    "hydra-core>=1.1",
    # model_zoo imports pkg_resources, which setuptools 81 removed.
    "setuptools<81",
]

# Written into the unpacked sdist in place of its setup.py, which would try to compile the absent
# C++ sources. Ships only the Python package and the model-zoo configs.
PYONLY_SETUP = """
from setuptools import find_packages, setup
setup(
    name="detectron2",
    version={version!r},
    description="Detectron2 v0.6 Python sources (from pb1-detectron2), without compiled ops",
    url="https://github.com/facebookresearch/detectron2",
    license="Apache-2.0",
    packages=find_packages(include=["detectron2", "detectron2.*"]),
    package_data={{"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]}},
    install_requires={requires!r},
    python_requires=">=3.7",
)
"""


def pip(*args: str) -> None:
    subprocess.check_call([sys.executable, "-m", "pip", *args])


def detectron2_importable() -> bool:
    # A subprocess, so a half-installed package cannot poison this interpreter.
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('detectron2') is None)"
    return subprocess.call([sys.executable, "-c", code]) == 0


def github_reachable(timeout: float = 5.0) -> bool:
    try:
        urllib.request.urlopen("https://github.com", timeout=timeout)
        return True
    except Exception:
        return False


def install_from_source() -> bool:
    print(f"[detectron2] building the official sources from {OFFICIAL_REPO} (compiles its ops) ...")
    try:
        pip("install", "--no-build-isolation", f"git+{OFFICIAL_REPO}")
        return True
    except subprocess.CalledProcessError as err:
        print(f"[detectron2] source build failed ({err}); falling back to the registry sources")
        return False


def registry_sdist() -> str:
    """The registry sdist, downloaded once into .cache/detectron2 (tests also read Detectron2's
    own tools/convert-torchvision-to-d2.py from it)."""
    path = os.path.join(SDIST_CACHE, REGISTRY_FILE)
    if not os.path.isfile(path):
        os.makedirs(SDIST_CACHE, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=SDIST_CACHE) as tmp:
            os.replace(download_registry_sdist(tmp), path)
    return path


def download_registry_sdist(dest: str) -> str:
    """Fetch the sdist from the package index by hand: `pip download` refuses it, because its
    metadata declares a direct-URL extra (panopticapi). The file is checked against a pinned
    hash."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    with urllib.request.urlopen(f"{index}/{REGISTRY_PROJECT}/", timeout=60) as page:
        html = page.read().decode()
    match = re.search(r'href="([^"#]*/' + re.escape(REGISTRY_FILE) + r')[^"]*"', html)
    if not match:
        raise InstallError(f"{index}/{REGISTRY_PROJECT}/ does not list {REGISTRY_FILE}")
    url = urllib.parse.urljoin(f"{index}/{REGISTRY_PROJECT}/", match.group(1))
    path = os.path.join(dest, REGISTRY_FILE)
    with urllib.request.urlopen(url, timeout=300) as src, open(path, "wb") as out:
        shutil.copyfileobj(src, out)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != REGISTRY_SHA256:
        raise InstallError(f"{url}: sha256 {digest} is not the pinned {REGISTRY_SHA256}")
    return path


def build_pyonly_wheel() -> str:
    cached = glob.glob(os.path.join(WHEEL_CACHE, f"detectron2-{PYONLY_VERSION}-*.whl"))
    if cached:
        return cached[0]
    os.makedirs(WHEEL_CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = registry_sdist()
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        (src,) = [d for d in glob.glob(os.path.join(tmp, "*")) if os.path.isdir(d)]
        with open(os.path.join(src, "setup.py"), "w") as f:
            f.write(PYONLY_SETUP.format(version=PYONLY_VERSION, requires=PYONLY_REQUIRES))
        for stale in ("setup.cfg", "pyproject.toml"):
            if os.path.exists(os.path.join(src, stale)):
                os.remove(os.path.join(src, stale))
        shutil.rmtree(os.path.join(src, "pb1_detectron2.egg-info"), ignore_errors=True)
        pip("wheel", "--no-deps", "--no-build-isolation", "-w", WHEEL_CACHE, src)
    (wheel,) = glob.glob(os.path.join(WHEEL_CACHE, f"detectron2-{PYONLY_VERSION}-*.whl"))
    return wheel


STARTUP_HOOK = "infomin_det_detectron2_compat.pth"


def write_startup_hook() -> None:
    """A .pth line that arms detection.compat's import hook at interpreter start-up, so plain
    `import detectron2` works in this environment whatever was imported first. Sorted after the
    editable install's own .pth, and silent if the project is not importable."""
    site_packages = sysconfig.get_paths()["purelib"]
    line = (
        "import importlib.util as _u; _u.find_spec('detection') and "
        "__import__('detection.compat').compat.install_import_hook()\n"
    )
    with open(os.path.join(site_packages, STARTUP_HOOK), "w") as f:
        f.write(line)


def main() -> int:
    try:
        status = install()
    except InstallError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if status == 0:
        write_startup_hook()
    return status


def install() -> int:
    choice = os.environ.get("D2_BUILD", "auto")
    if detectron2_importable() and choice == "auto":
        print("[detectron2] an importable build is already installed; keeping it")
        return 0
    if choice == "source" or (choice == "auto" and github_reachable()):
        if install_from_source():
            return 0
        if choice == "source":
            return 1
    else:
        print("[detectron2] github.com is out of reach: using the registry's Python-only sources")
    wheel = build_pyonly_wheel()
    pip("install", wheel)
    print(
        f"[detectron2] installed {os.path.basename(wheel)} (Python only; see detection/compat.py)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
