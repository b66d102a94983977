#!/usr/bin/env bash
# Packs into .device/ (ignored) what a lent GPU machine lacks for bench/device/checks.sh. That
# machine (/work/.library/device/KINDS.md) has Python 3.12 with PyTorch, torchvision, timm, Pillow,
# NumPy, OpenCV, matplotlib and pytest, but no Detectron2, no network and no ../shared:
#   .device/wheels     Detectron2 (our pure-Python build, .cache/wheels) and its missing
#                      dependencies, as wheels for that Python (PYVER, default 3.12)
#   .device/pretrain   BCCD's JPEGs and the CIFAR-10 archive, from ../shared/data
#   .device/detection  Fashion-MNIST and the scikit-image wheel whose photographs the demo uses
# A stage carries .device/wheels and its own folder, each pair under the 64 MiB a call may carry.
# Run from the repository root after `make install`: bash bench/device/bundle.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PYVER=${PYVER:-3.12}
pip=(.venv/bin/python -m pip --disable-pip-version-check --quiet)
rm -rf .device.tmp && mkdir -p .device.tmp/wheels .device.tmp/pretrain .device.tmp/detection

# Versions as installed here, so the device runs what the tests passed with.
pinned() { .venv/bin/python -m pip freeze 2>/dev/null | grep -i -E "^($(IFS='|'; echo "$*"))==" ; }
binary=$(pinned yacs termcolor omegaconf hydra-core iopath pycocotools)
"${pip[@]}" download --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .device.tmp/wheels $binary "setuptools<81"
# Published as source only (pure Python): built into wheels here.
"${pip[@]}" wheel --no-deps -w .device.tmp/wheels $(pinned fvcore antlr4-python3-runtime)
cp .cache/wheels/detectron2-*.whl .device.tmp/wheels/

cp -r ../shared/data/bccd/JPEGImages .device.tmp/pretrain/JPEGImages
cp ../shared/data/cifar10-images.tar.gz .device.tmp/pretrain/
synthetic() { .venv/bin/python -c "from pretrain.demo import synthetic; $1"; }
cp -r "$(synthetic 'print(synthetic.ensure_fashion_mnist())')" .device.tmp/detection/fashion-mnist
synthetic "synthetic.load_photos('.cache/demo')" >/dev/null
cp .cache/demo/scikit_image-*.whl .device.tmp/detection/

rm -rf .device && mv .device.tmp .device
du -sh .device/* && ls .device/wheels
