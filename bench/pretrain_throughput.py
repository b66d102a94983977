#!/usr/bin/env python
"""Pretraining throughput, three figures side by side in one run (images/s):

  data pipeline   the config's views (decode + augmentation, all workers), no model
  model step      query fwd+bwd, key fwd, queue update on synthetic tensors already on the device
  end to end      the two together, as tools/pretrain.py runs them

Every figure is taken after a warm-up that drains the DataLoader's prefetch queue, so it is the
pipeline's rate and not the buffer's.

    python bench/pretrain_throughput.py --config-file configs/pretrain/infomin_R50_200ep.yaml \
        [--images DIR] [--iters 30] [KEY VALUE ...]

--images defaults to BCCD's 640x480 JPEGs in ../shared/data (ImageNet-like size).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import torch  # noqa: E402

from pretrain.config import load_cfg  # noqa: E402
from pretrain.data.images import ImageViews, collate_views, list_images  # noqa: E402
from pretrain.data.views import build_views  # noqa: E402
from pretrain.engine.sampler import EpochBatchSampler  # noqa: E402
from pretrain.engine.trainer import to_device  # noqa: E402
from pretrain.models.moco import build_moco  # noqa: E402

DEFAULT_IMAGES = os.path.join(os.path.dirname(REPO), "shared", "data", "bccd", "JPEGImages")


def endless_batches(cfg, paths):
    """Batches forever (epoch after epoch), the way the trainer draws them."""
    dataset = ImageViews(paths, build_views(cfg), seed=cfg.SEED)
    epoch = 0
    while True:
        sampler = EpochBatchSampler(len(paths), cfg.SOLVER.BATCH_SIZE, 0, 1, cfg.SEED, epoch)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, num_workers=cfg.DATA.NUM_WORKERS,
            collate_fn=collate_views, pin_memory=torch.cuda.is_available(),
            persistent_workers=False)
        yield from (views for views, _ in loader)
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
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="configs/pretrain/infomin_R50_200ep.yaml")
    parser.add_argument("--images", default=DEFAULT_IMAGES)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model step")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cfg = load_cfg(args.config_file, args.opts)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    batch = cfg.SOLVER.BATCH_SIZE
    paths = list_images(args.images)
    # Enough warm-up batches to empty what the workers prefetched before timing started.
    warmup = max(3, 2 * cfg.DATA.NUM_WORKERS + 1)

    batches = endless_batches(cfg, paths)
    data_rate = timed(lambda: next(batches), warmup, args.iters, batch, lambda: None)

    model = build_moco(cfg).to(device)
    if device == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.03,
                                momentum=0.9, weight_decay=1e-4)
    forward = torch.compile(model) if args.compile else model

    def train_step(views):
        views = [to_device(v, device) for v in views]
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss, _ = forward(*views)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        model.momentum_update()

    synthetic = [v.to(device) for v in next(batches)]
    model_rate = timed(lambda: train_step(synthetic), 3, args.iters, batch, sync)
    end_to_end = timed(lambda: train_step(next(batches)), warmup, args.iters, batch, sync)

    print(f"config {args.config_file} | {cfg.MODEL.ARCH} | batch {batch} | crop "
          f"{cfg.DATA.CROP_SIZE} | {cfg.DATA.NUM_WORKERS} workers | {device} | "
          f"{len(paths)} images from {args.images}")
    print(f"{'stage':<16}{'img/s':>10}{'vs model step':>16}")
    for name, rate in (("data pipeline", data_rate), ("model step", model_rate),
                       ("end to end", end_to_end)):
        print(f"{name:<16}{rate:>10.1f}{rate / model_rate:>15.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
