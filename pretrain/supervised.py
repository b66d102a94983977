"""Supervised pretraining, the baseline of every transfer table: a ResNet trained from random
initialisation to classify labelled class folders (ImageNet layout), for data that has labels and
machines that cannot download torchvision's ImageNet weights (the demo's world has no ImageNet).

Cross-entropy, SGD with momentum, a linear warm-up then a cosine decay per iteration: on short
schedules that learns far more than steps per epoch do. Checkpoints are atomic; --resume continues
from the last one with the same data order. OUTPUT_DIR/model_final.pth is a plain torchvision
state dict (classifier included), which tools/convert.py exports to Detectron2."""
from __future__ import annotations

import itertools
import json
import math
import os
import time

import torch
import torch.nn as nn
from fvcore.common.config import CfgNode as CN

from .config import merge_overrides
from .engine.checkpoint import (atomic_torch_save, last_checkpoint, load_checkpoint,
                                rng_state, save_checkpoint, set_rng_state)
from .engine.progress import METRICS_FILE
from .evaluation.data import eval_transform, folder_classes, labelled_folder, train_transform
from .evaluation.linear import top1
from .models.backbone import build_backbone

_C = CN()
_C.ARCH = "resnet50"
_C.WIDTH = 1
_C.STEM = "imagenet"  # as the pretraining config's MODEL.STEM (pretrain/config.py)
_C.TRAIN_ROOT = ""
_C.VAL_ROOT = ""  # "" = no validation
_C.TRAIN_LIMIT = 0
_C.VAL_LIMIT = 0
_C.CROP_SIZE = 224
_C.CROP_SCALE = (0.08, 1.0)
_C.MAX_ITER = 1000
_C.BATCH_SIZE = 256
_C.BASE_LR = 0.1  # for a batch of 256 (torchvision's ImageNet recipe), scaled linearly
_C.WARMUP_FRACTION = 0.1  # of MAX_ITER, linear from 0
_C.MOMENTUM = 0.9
_C.WEIGHT_DECAY = 1e-4
_C.NUM_WORKERS = 8
_C.SEED = 0
_C.CHECKPOINT_PERIOD = 500
_C.LOG_PERIOD = 50
_C.OUTPUT_DIR = "output/supervised"


def load_supervised_cfg(config_file: str = "", opts=()) -> CN:
    """Defaults <- config file <- KEY VALUE overrides, frozen; a bad file or key is a one-line
    error naming it."""
    cfg = merge_overrides(_C.clone(), config_file, opts)
    if cfg.MAX_ITER < 1:
        raise SystemExit(f"error: MAX_ITER {cfg.MAX_ITER}: need at least one iteration")
    cfg.freeze()
    return cfg


def learning_rate(cfg, iteration: int) -> float:
    """At `iteration` (0-based): linear warm-up to the peak, then cosine to zero at MAX_ITER."""
    peak = cfg.BASE_LR * cfg.BATCH_SIZE / 256
    warmup = int(cfg.WARMUP_FRACTION * cfg.MAX_ITER)
    if iteration < warmup:
        return peak * (iteration + 1) / warmup
    progress = (iteration - warmup) / max(1, cfg.MAX_ITER - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def epoch_order(n_images: int, seed: int, epoch: int) -> list[int]:
    """The images of one epoch in their shuffled order, the same on a resumed run."""
    generator = torch.Generator().manual_seed(seed * 100003 + epoch)
    return torch.randperm(n_images, generator=generator).tolist()


def batches(dataset, cfg, start_iteration: int, pin_memory: bool):
    """Batches from `start_iteration` on, epoch after epoch (the last partial batch dropped)."""
    per_epoch = len(dataset) // cfg.BATCH_SIZE
    if per_epoch == 0:
        raise SystemExit(f"error: {cfg.TRAIN_ROOT}: {len(dataset)} images, fewer than one batch "
                         f"of BATCH_SIZE {cfg.BATCH_SIZE}")
    epoch, skip = divmod(start_iteration, per_epoch)
    while True:
        order = epoch_order(len(dataset), cfg.SEED, epoch)[:per_epoch * cfg.BATCH_SIZE]
        order = order[skip * cfg.BATCH_SIZE:]
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, order), batch_size=cfg.BATCH_SIZE,
            num_workers=cfg.NUM_WORKERS, pin_memory=pin_memory)
        yield from loader
        epoch, skip = epoch + 1, 0


def train_supervised(cfg, resume: bool = False) -> float | None:
    """Trains; writes OUTPUT_DIR/model_final.pth and returns the top-1 (%) on VAL_ROOT (None
    without one)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.SEED)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    train_set = labelled_folder(cfg.TRAIN_ROOT,
                                train_transform(cfg.CROP_SIZE, tuple(cfg.CROP_SCALE)),
                                cfg.TRAIN_LIMIT)
    classes = folder_classes(train_set)
    model, feature_dim = build_backbone(cfg.ARCH, cfg.WIDTH, cfg.STEM)
    model.fc = nn.Linear(feature_dim, len(classes))  # torchvision's name: a torchvision state dict
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=cfg.MOMENTUM,
                                weight_decay=cfg.WEIGHT_DECAY)
    iteration = 0
    previous = last_checkpoint(cfg.OUTPUT_DIR) if resume else None
    if previous:
        state = load_checkpoint(previous)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        iteration = state["iteration"]
        print(f"resumed from {previous} at iteration {iteration}", flush=True)

    def checkpoint(name: str) -> None:
        save_checkpoint(cfg.OUTPUT_DIR, name, {
            "iteration": iteration, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "rng": rng_state(), "classes": classes})

    model.train()
    start, seen, loss_sum = time.perf_counter(), 0, 0.0
    with open(os.path.join(cfg.OUTPUT_DIR, METRICS_FILE), "a") as log:
        # The batches still due: none on a resumed run that had finished.
        remaining = max(0, cfg.MAX_ITER - iteration)
        for images, labels in itertools.islice(
                batches(train_set, cfg, iteration, device == "cuda"), remaining):
            lr = learning_rate(cfg, iteration)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = nn.functional.cross_entropy(model(images.to(device, non_blocking=True)),
                                               labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iteration += 1
            seen += len(labels)
            loss_sum += loss.item() * len(labels)
            if iteration % cfg.LOG_PERIOD == 0 or iteration == cfg.MAX_ITER:
                record = {"iteration": iteration, "loss": loss_sum / seen, "lr": lr,
                          "img_per_s": seen / (time.perf_counter() - start)}
                log.write(json.dumps(record) + "\n")
                log.flush()
                print(f"iter {iteration}/{cfg.MAX_ITER} loss {record['loss']:.4f} lr {lr:.4g} "
                      f"{record['img_per_s']:.0f} img/s", flush=True)
                start, seen, loss_sum = time.perf_counter(), 0, 0.0
            if iteration % cfg.CHECKPOINT_PERIOD == 0 and iteration < cfg.MAX_ITER:
                checkpoint(f"checkpoint_{iteration:08d}.pth")
        acc = None
        if cfg.VAL_ROOT:
            val_set = labelled_folder(cfg.VAL_ROOT, eval_transform(cfg.CROP_SIZE), cfg.VAL_LIMIT)
            acc = top1(model, torch.utils.data.DataLoader(
                val_set, batch_size=cfg.BATCH_SIZE, num_workers=cfg.NUM_WORKERS), device)
            log.write(json.dumps({"iteration": iteration, "val_top1": acc}) + "\n")
            print(f"supervised top-1 on {cfg.VAL_ROOT}: {acc:.2f}%", flush=True)
    atomic_torch_save(model.state_dict(), os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    checkpoint(f"checkpoint_{iteration:08d}.pth")
    return acc
