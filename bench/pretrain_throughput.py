#!/usr/bin/env python
"""Pretraining throughput, side by side in one run (images/s):

  model step             query fwd+bwd, key fwd, queue update on tensors already on the device
  <pipeline> data        that pipeline's views alone (decode + augmentation), no model
  <pipeline> end to end  that pipeline feeding the model step, as tools/pretrain.py runs them

for each of --pipelines (DATA.PIPELINE: cpu = PIL/torchvision/timm in the DataLoader workers,
gpu = workers read bytes, the device decodes and augments whole batches). Every figure is taken
after a warm-up that drains the DataLoader's prefetch queue, so it is the pipeline's rate and not
the buffer's.

    python bench/pretrain_throughput.py --config-file configs/pretrain/infomin_R50_200ep.yaml \
        [--images DIR_OR_PACK] [--iters 30] [--pipelines cpu,gpu] [--compile] [KEY VALUE ...]

--images defaults to BCCD's 640x480 JPEGs in ../shared/data (ImageNet-like size); a pack built by
tools/pack_images.py works too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from pretrain.config import load_cfg
from pretrain.data.packed import open_images
from pretrain.data.pipelines import ViewPipeline
from pretrain.engine.sampler import EpochBatchSampler
from pretrain.models.moco import build_moco

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_IMAGES = os.path.join(os.path.dirname(REPO), "shared", "data", "bccd", "JPEGImages")


def endless_views(cfg, images, device):
    """Views on the device forever (epoch after epoch), the way the trainer draws them."""
    pipeline = ViewPipeline(cfg, images, device)
    epoch = 0
    while True:
        sampler = EpochBatchSampler(len(images), cfg.SOLVER.BATCH_SIZE, 0, 1, cfg.SEED, epoch)
        loader = torch.utils.data.DataLoader(
            pipeline.dataset,
            batch_sampler=sampler,
            num_workers=cfg.DATA.NUM_WORKERS,
            collate_fn=pipeline.collate,
            pin_memory=pipeline.pin_memory,
        )
        yield from (pipeline.views(batch)[0] for batch, _ in loader)
        epoch += 1


def timed(step, warmup: int, iters: int, batch: int, sync) -> float:
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync()
    return iters * batch / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default="configs/pretrain/infomin_R50_200ep.yaml")
    parser.add_argument("--images", default=DEFAULT_IMAGES)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--pipelines", default="cpu,gpu", help="DATA.PIPELINE values to compare")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model step")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cfg = load_cfg(args.config_file, args.opts)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    batch = cfg.SOLVER.BATCH_SIZE
    images = open_images(args.images)
    # Enough warm-up batches to empty what the workers prefetched before timing started.
    warmup = max(3, 2 * cfg.DATA.NUM_WORKERS + 1)

    model = build_moco(cfg).to(device)
    if device == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.03, momentum=0.9, weight_decay=1e-4
    )
    forward = torch.compile(model) if args.compile else model

    def train_step(views):
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = forward(*views).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.after_optimizer_step()

    rates = {}
    for kind in args.pipelines.split(","):
        cfg.defrost()
        cfg.DATA.PIPELINE = kind
        views = endless_views(cfg, images, device)
        rates[f"{kind} data"] = timed(lambda: next(views), warmup, args.iters, batch, sync)
        if "model step" not in rates:
            fixed = next(views)
            rates["model step"] = timed(lambda: train_step(fixed), 3, args.iters, batch, sync)
        rates[f"{kind} end to end"] = timed(
            lambda: train_step(next(views)), warmup, args.iters, batch, sync
        )

    print(
        f"config {args.config_file} | {cfg.MODEL.ARCH} | batch {batch} | crop "
        f"{cfg.DATA.CROP_SIZE} | {cfg.DATA.AUGMENTATION} | jigsaw {cfg.MODEL.JIGSAW.ENABLED} | "
        f"{cfg.DATA.NUM_WORKERS} workers | {device}{' compiled' if args.compile else ''} | "
        f"{len(images)} images from {args.images}"
    )
    print(f"{'stage':<22}{'img/s':>10}{'vs model step':>16}")
    for name, rate in sorted(rates.items(), key=lambda kv: kv[0] != "model step"):
        print(f"{name:<22}{rate:>10.1f}{rate / rates['model step']:>15.2f}x")
    ends = [rates[k] for k in ("gpu end to end", "cpu end to end") if k in rates]
    if len(ends) == 2:
        print(f"gpu / cpu pipeline end to end: {ends[0] / ends[1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
