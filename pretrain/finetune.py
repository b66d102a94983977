"""Semi-supervised fine-tuning, SimCLR's protocol (Chen et al. 2020, Sec. 6 / App. B.5, Table 7):
the whole pretrained backbone and a new linear classifier trained with labels on a fraction of
the training set (1% or 10% of ImageNet's), then top-1 on the validation folder. A random
backbone (no MODEL.WEIGHTS) on the same fraction is its baseline.

It steps on the project's training loop (engine/loop.py): checkpoints every
SOLVER.CHECKPOINT_PERIOD iterations, at every epoch's end and wherever a scheduler's signal stops
it; --resume continues exactly; on SLURM it requeues like every stage. The fraction's file names
go to OUTPUT_DIR/subset.txt; OUTPUT_DIR/model_final.pth is a torchvision state dict (classifier
included) that tools/convert.py exports; OUTPUT_DIR/result.json holds the top-1. The config's keys
and defaults: pretrain/config.py (get_finetune_cfg)."""

from __future__ import annotations

import json
import os

import torch
import torch.nn as nn

from .common.atomic_io import atomic_torch_save, atomic_write_text
from .config import load_finetune_cfg  # noqa: F401 (the stage's config, imported from here)
from .engine.checkpoint import rng_state, save_checkpoint, set_rng_state
from .engine.loop import TrainLoop, classifier_step
from .engine.metrics import MetricsLog
from .engine.progress import LossLine
from .engine.run_folder import open_run_folder
from .engine.sampler import batches_per_epoch, seeded_batches
from .engine.schedule import batch_scaled_lr, warmup_cosine_lr
from .evaluation.backbone_loading import load_backbone
from .evaluation.data import eval_transform, folder_classes, labelled_folder, train_transform
from .evaluation.linear import predict
from .evaluation.readout_checks import warn_random_backbone
from .evaluation.subsets import labelled_subset

# A resume must not change these (pretrain/engine/run_folder.py).
MODEL_KEYS = (
    "SEED",
    "MODEL",
    "DATA.CROP_SIZE",
    "DATA.CROP_SCALE",
    "DATA.PERCENT",
    "DATA.SUBSET_FILE",
    "DATA.LIMIT",
)
SUBSET_FILE = "subset.txt"


def fine_tuned_model(cfg, num_classes: int) -> nn.Module:
    """The backbone MODEL.WEIGHTS holds (any format convert reads; random without), with a new
    linear classifier as torchvision's `fc`, initialised as SimCLR's head (N(0, 0.01), bias 0)."""
    warn_random_backbone(cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS")
    backbone, dim, *_ = load_backbone(
        cfg.MODEL.ARCH, cfg.MODEL.WEIGHTS, cfg.MODEL.ENCODER, cfg.MODEL.WIDTH, cfg.MODEL.STEM
    )
    backbone.fc = nn.Linear(dim, num_classes)
    nn.init.normal_(backbone.fc.weight, std=0.01)
    nn.init.zeros_(backbone.fc.bias)
    return backbone


def run_finetune(cfg, resume: bool = False, force: bool = False) -> float | None:
    """Fine-tunes; returns the top-1 (%) on DATA.VAL_ROOT, or None when a scheduler's signal
    stopped it (checkpointed; submitit requeues the job). `resume` / `force`: as pretraining's
    (pretrain/engine/run_folder.py)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    solver = cfg.SOLVER
    pool = labelled_folder(
        cfg.DATA.ROOT,
        train_transform(cfg.DATA.CROP_SIZE, tuple(cfg.DATA.CROP_SCALE)),
        cfg.DATA.LIMIT,
        cfg.SEED,
    )
    train_set, names = labelled_subset(
        pool, cfg.DATA.ROOT, cfg.DATA.PERCENT, cfg.SEED, cfg.DATA.SUBSET_FILE
    )
    per_epoch = batches_per_epoch(
        len(train_set), solver.BATCH_SIZE, f"the labelled fraction of {cfg.DATA.ROOT}"
    )
    val_set = labelled_folder(
        cfg.DATA.VAL_ROOT, eval_transform(cfg.DATA.CROP_SIZE), cfg.DATA.VAL_LIMIT
    )
    torch.manual_seed(cfg.SEED)
    model = fine_tuned_model(cfg, len(folder_classes(pool))).to(device)
    start = open_run_folder(cfg, MODEL_KEYS, "iteration", resume=resume, force=force)
    if not start.state:
        atomic_write_text(
            "".join(f"{name}\n" for name in names), os.path.join(cfg.OUTPUT_DIR, SUBSET_FILE)
        )
    print(
        f"fine-tuning on {len(train_set)} labelled images of {cfg.DATA.ROOT} "
        f"({cfg.DATA.SUBSET_FILE or f'{cfg.DATA.PERCENT:g}% of each class, seed {cfg.SEED}'}; "
        f"{os.path.join(cfg.OUTPUT_DIR, SUBSET_FILE)}), {per_epoch} steps an epoch",
        flush=True,
    )
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=1.0,
        momentum=solver.MOMENTUM,
        nesterov=solver.NESTEROV,
        weight_decay=solver.WEIGHT_DECAY,
    )
    total = solver.EPOCHS * per_epoch
    scheduler = warmup_cosine_lr(
        optimizer, 0, total, peak=batch_scaled_lr(solver.BASE_LR, solver.BATCH_SIZE)
    )
    iteration = start.step("iteration")
    if start.state:
        model.load_state_dict(start.state["model"])
        optimizer.load_state_dict(start.state["optimizer"])
        scheduler.load_state_dict(start.state["scheduler"])
        set_rng_state(start.state["rng"])
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
                "window": progress.window(),
            },
        )

    loader_args = dict(num_workers=cfg.DATA.NUM_WORKERS, pin_memory=device == "cuda")
    batches = seeded_batches(
        train_set,
        solver.BATCH_SIZE,
        cfg.SEED,
        iteration,
        with_epoch=False,
        resumed_rng=start.state["rng"] if start.state else None,
        **loader_args,
    )
    log = MetricsLog(cfg.OUTPUT_DIR, "finetune", resumed_at=iteration if start.state else None)
    progress = LossLine(
        log,
        cfg.LOG_PERIOD,
        scheduler,
        total,
        iteration,
        start.state.get("window") if start.state else None,
    )
    step = classifier_step(model, optimizer, scheduler, device)
    loop = TrainLoop(
        step,
        checkpoint,
        iteration,
        total,
        lambda done: done % solver.CHECKPOINT_PERIOD == 0 or done % per_epoch == 0,
        [progress],
        device,
    )
    if not loop.run(batches):
        log.close()
        return None
    with log:
        predicted, labels = predict(
            model,
            torch.utils.data.DataLoader(val_set, batch_size=solver.BATCH_SIZE, **loader_args),
            device,
        )
        acc = 100.0 * sum(p == t for p, t in zip(predicted, labels)) / max(1, len(labels))
        log.write(total, {"val_top1": acc})
    print(
        f"fine-tuned top-1 on {cfg.DATA.VAL_ROOT}: {acc:.2f}% ({len(train_set)} labelled "
        f"images, {'random init' if not cfg.MODEL.WEIGHTS else cfg.MODEL.WEIGHTS})",
        flush=True,
    )
    atomic_torch_save(model.state_dict(), os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    atomic_write_text(
        json.dumps(
            {
                "top1": acc,
                "labelled_images": len(train_set),
                "weights": cfg.MODEL.WEIGHTS,
                "percent": cfg.DATA.PERCENT,
                "subset_file": cfg.DATA.SUBSET_FILE,
                "seed": cfg.SEED,
                # per image, for paired tests (evaluation/paired_tests.py)
                "predictions": predicted,
                "labels": labels,
            }
        ),
        os.path.join(cfg.OUTPUT_DIR, "result.json"),
    )
    if loop.iteration > iteration:  # a finished run resumed has its last checkpoint already
        checkpoint(total)
    return acc
