"""Supervised pretraining, the baseline of every transfer table: a ResNet trained from random
initialisation to classify labelled class folders (ImageNet layout), for data that has labels and
machines that cannot download torchvision's ImageNet weights (the demo's world has no ImageNet).

Cross-entropy, SGD with momentum, a linear warm-up then a cosine decay per iteration: on short
schedules that learns far more than steps per epoch do. Checkpoints are atomic; --resume continues
from the last one with the same data order. OUTPUT_DIR/model_final.pth is a plain torchvision
state dict (classifier included), which tools/convert.py exports to Detectron2. The config's keys
and defaults: pretrain/config.py (get_supervised_cfg)."""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn as nn

from .config import load_supervised_cfg  # noqa: F401 (the stage's config, imported from here)
from .engine.checkpoint import atomic_torch_save, rng_state, save_checkpoint, set_rng_state
from .engine.metrics import MetricsLog
from .engine.loop import TrainLoop, classifier_step, every
from .engine.progress import LossLine
from .engine.run_folder import open_run_folder
from .engine.sampler import batches_per_epoch, seeded_batches
from .engine.schedule import batch_scaled_lr, warmup_cosine_lr
from .evaluation.data import eval_transform, folder_classes, labelled_folder, train_transform
from .evaluation.linear import top1
from .models.backbone import build_backbone

# A resume must not change these (pretrain/engine/run_folder.py).
MODEL_KEYS = ("SEED", "MODEL", "DATA.CROP_SIZE", "DATA.CROP_SCALE")


def train_supervised(cfg, resume: bool = False, force: bool = False) -> float | None:
    """Trains; writes OUTPUT_DIR/model_final.pth and returns the top-1 (%) on DATA.VAL_ROOT (None
    without one). `resume` / `force`: as pretraining's (pretrain/engine/run_folder.py)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    solver = cfg.SOLVER
    train_set = labelled_folder(
        cfg.DATA.ROOT,
        train_transform(cfg.DATA.CROP_SIZE, tuple(cfg.DATA.CROP_SCALE)),
        cfg.DATA.LIMIT,
    )
    batches_per_epoch(len(train_set), solver.BATCH_SIZE, cfg.DATA.ROOT)
    start = open_run_folder(cfg, MODEL_KEYS, "iteration", resume=resume, force=force)
    torch.manual_seed(cfg.SEED)
    classes = folder_classes(train_set)
    model, feature_dim = build_backbone(cfg.MODEL.ARCH, cfg.MODEL.WIDTH, cfg.MODEL.STEM)
    model.fc = nn.Linear(feature_dim, len(classes))  # torchvision's name: a torchvision state dict
    model.to(device)
    # SGD's lr 1 times the schedule's value: the lr is the schedule's value to the last bit.
    optimizer = torch.optim.SGD(
        model.parameters(), lr=1.0, momentum=solver.MOMENTUM, weight_decay=solver.WEIGHT_DECAY
    )
    peak = batch_scaled_lr(solver.BASE_LR, solver.BATCH_SIZE)
    scheduler = warmup_cosine_lr(
        optimizer, int(solver.WARMUP_FRACTION * solver.MAX_ITER), solver.MAX_ITER, peak=peak
    )
    iteration = start.step("iteration")
    if start.state:
        model.load_state_dict(start.state["model"])
        optimizer.load_state_dict(start.state["optimizer"])
        set_rng_state(start.state["rng"])
        if "scheduler" in start.state:
            scheduler.load_state_dict(start.state["scheduler"])
        else:  # a checkpoint from before it was stored: the schedule is a function of iteration
            scheduler.last_epoch = iteration - 1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "step() before optimizer.step()": on purpose
                scheduler.step()
        print(f"resumed from {start.checkpoint} at iteration {iteration}", flush=True)

    def checkpoint(done: int) -> None:
        save_checkpoint(
            cfg.OUTPUT_DIR,
            f"checkpoint_{done:08d}.pth",
            {
                "cfg": cfg.dump(),
                "iteration": done,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "classes": classes,
                "window": progress.window(),
            },
        )

    model.train()
    log = MetricsLog(cfg.OUTPUT_DIR, "supervised", resumed_at=iteration if start.state else None)
    batches = seeded_batches(
        train_set,
        solver.BATCH_SIZE,
        cfg.SEED,
        iteration,
        with_epoch=False,
        resumed_rng=start.state["rng"] if start.state else None,
        num_workers=cfg.DATA.NUM_WORKERS,
        pin_memory=device == "cuda",
    )

    progress = LossLine(
        log,
        cfg.LOG_PERIOD,
        scheduler,
        solver.MAX_ITER,
        iteration,
        start.state.get("window") if start.state else None,
    )
    step = classifier_step(model, optimizer, scheduler, device)
    loop = TrainLoop(
        step,
        checkpoint,
        iteration,
        solver.MAX_ITER,
        every(solver.CHECKPOINT_PERIOD),
        [progress],
        device,
    )
    if not loop.run(batches):
        log.close()
        return None  # a scheduler's signal: checkpointed; submitit requeues the job
    iteration = loop.iteration
    with log:
        acc = None
        if cfg.DATA.VAL_ROOT:
            val_set = labelled_folder(
                cfg.DATA.VAL_ROOT, eval_transform(cfg.DATA.CROP_SIZE), cfg.DATA.VAL_LIMIT
            )
            acc = top1(
                model,
                torch.utils.data.DataLoader(
                    val_set, batch_size=solver.BATCH_SIZE, num_workers=cfg.DATA.NUM_WORKERS
                ),
                device,
            )
            log.write(iteration, {"val_top1": acc})
            print(f"supervised top-1 on {cfg.DATA.VAL_ROOT}: {acc:.2f}%", flush=True)
    atomic_torch_save(model.state_dict(), os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    checkpoint(iteration)
    return acc
