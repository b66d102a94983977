#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one command for a lent GPU machine (issues 5, 7 and 8):
#   pretrain   the gpu-marked tests (the batched ops and the pipeline on CUDA against PIL and the
#              CPU, SyncBN/bf16 against fp32); bench/pretrain_throughput.py: InfoMin ResNet-50,
#              224 px, batch 256, the model step compiled, CPU and GPU pipelines in one run on
#              640x480 JPEGs; bench/pipeline_knn.py: the same short CIFAR-10 pretraining with
#              either pipeline, kNN top-1 of each.                           About 8 min.
#   detection  tools/demo.py on the GPU: pretraining on views that share only the object at a
#              GPU's schedule (configs/pretrain/demo_R18_objects_gpu.yaml, the demo's default
#              there), the supervised baseline, Mask R-CNN fine-tunes from each and from random
#              init (3 seeds), evaluated.                                     About 7 min.
# Prepare here once (bash bench/device/bundle.sh), then run each stage on the lent machine, from
# the repository root, carrying .device/wheels and .device/<stage>:
#   bash bench/device/checks.sh pretrain|detection [OUT]
# Each step's log (and the demo's report) goes to OUT ($OUT on the lent machine); a summary line
# per step, with its exit status and seconds, ends the output. SMOKE=1 runs every step at a toy
# size on any machine, to check the script itself.
set -uo pipefail
stage=${1:-}
case $stage in
  pretrain|detection) ;;
  *) echo "usage: bash bench/device/checks.sh pretrain|detection [OUT]" >&2; exit 2 ;;
esac
out=${2:-${OUT:-device_checks}}
py=${PYTHON:-python3}
mkdir -p "$out" && : > "$out/summary.txt"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
workers=$(( $(nproc) < 16 ? $(nproc) : 16 ))

# The packages the machine lacks, from the carried wheels (its own torch stays).
if ! $py -c "import detectron2, fvcore, pycocotools" 2>/dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/device_site .device/wheels/*.whl || exit 1
  export PYTHONPATH="/tmp/device_site:$PYTHONPATH"
fi

step() {  # step NAME SECONDS COMMAND...: the command's output to OUT/NAME.log, its tail here
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo "=== $name: $*"
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  rc=$?
  grep -v -i "warn" "$out/$name.log" | tail -n 30
  echo "=== $name: exit $rc after $(( SECONDS - start )) s" | tee -a "$out/summary.txt"
}

step environment 120 bash -c "nvidia-smi -L; $py -c 'import torch, torchvision, timm, detectron2
print(torch.__version__, torchvision.__version__, timm.__version__, detectron2.__version__)
print(torch.cuda.get_device_name() if torch.cuda.is_available() else \"no GPU\")'"

case $stage in
pretrain)
  # ../shared/data does not travel to the lent machine: the carried copy stands in for it.
  if [ ! -d ../shared/data ]; then
    mkdir -p ../shared/data/bccd
    ln -sfn "$PWD/.device/pretrain/JPEGImages" ../shared/data/bccd/JPEGImages
    ln -sfn "$PWD/.device/pretrain/cifar10-images.tar.gz" ../shared/data/cifar10-images.tar.gz
  fi
  if [ -n "${SMOKE:-}" ]; then
    size=(--iters 1 SOLVER.BATCH_SIZE 8 DATA.NUM_WORKERS 1 MODEL.ARCH resnet18 DATA.CROP_SIZE 64
          MODEL.JIGSAW.CELL 32 MODEL.JIGSAW.PATCH 24 MODEL.QUEUE_SIZE 64)
    knn=(--iters 2 --knn-train 64 --knn-test 32 SOLVER.BATCH_SIZE 8)
  else
    size=(--compile DATA.NUM_WORKERS "$workers")
    knn=(--iters 1000 SOLVER.BATCH_SIZE 256 MODEL.QUEUE_SIZE 4096 DATA.NUM_WORKERS "$workers")
  fi
  step gpu_tests 150 $py -m pytest -q -p no:cacheprovider -m gpu tests/pretrain
  step throughput 270 $py bench/pretrain_throughput.py \
      --config-file configs/pretrain/infomin_R50_200ep.yaml --pipelines cpu,gpu "${size[@]}"
  rm -rf /tmp/pipeline_knn  # it resumes runs it finds there
  step pipeline_knn 270 $py bench/pipeline_knn.py --seeds 0,1 --output /tmp/pipeline_knn \
      "${knn[@]}" DATA.CROP_SIZE 32
  ;;
detection)
  # The demo's inputs, which it would otherwise fetch: Fashion-MNIST and scikit-image's photos.
  if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    mkdir -p /usr/share/datasets && cp -r .device/detection/fashion-mnist /usr/share/datasets/
  fi
  mkdir -p .cache/demo && cp -n .device/detection/scikit_image-*.whl .cache/demo/ 2>/dev/null
  if [ -n "${SMOKE:-}" ]; then
    size=(--n-train 8 --n-test 8 --n-objects 64 20 --instances 128 2 --pretrain-iters 2
          --finetune-iters 4 --supervised-iters 2 --seeds 1 --data-dir /tmp/device_demo_data)
  else
    size=(--supervised-iters 1500)
  fi
  rm -rf /tmp/device_demo
  step demo 540 $py tools/demo.py --output /tmp/device_demo "${size[@]}"
  cp /tmp/device_demo/report.md /tmp/device_demo/*.png "$out/" 2>/dev/null
  ;;
esac
cat "$out/summary.txt"
