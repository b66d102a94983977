"""The pretraining loop: one code path for 1 CPU process, N local processes and multi-node jobs."""

from __future__ import annotations

import os
import time
from typing import Any, NamedTuple

import torch
from torch.nn.parallel import DistributedDataParallel

from .common.cpu_bf16 import cpu_amp_note, cpu_has_native_bf16
from .common.errors import ConfigError, TrainingDivergedError
from .common.run_lines import pretrain_end_line, pretrain_start_line
from .data.checks import checked_images
from .data.pipelines import ViewPipeline
from .evaluation.knn import knn_of_config
from .models.ema import run_length_momentum
from .models.optim import build_solver, group_lr_factors
from .models.registry import build_model, method_class
from .models.sync_bn import convert_to_sync_bn
from .common import distributed as du
from .engine.loop import Hook, TrainLoop
from .engine.checkpoint import last_checkpoint, rng_state, save_checkpoint, set_rng_state
from .engine.progress import Progress
from .engine.run_folder import open_run_folder
from .engine.sampler import batches_per_epoch, seeded_batches
from .engine.schedule import batch_scaled_lr, warmup_cosine, warmup_steps

CHECKPOINT_FORMAT = "infomin-det/pretrain/v1"
# A resume must not change these (pretrain/engine/run_folder.py): they define the model, its
# method and the views it learns from; the seed names the run.
MODEL_KEYS = (
    "SEED",
    "MODEL",
    "DATA.AUGMENTATION",
    "DATA.CROP_SIZE",
    "DATA.CROP_SCALE",
    "DATA.VIEWS_FROM",
    "DATA.VIEWS",
    "DATA.VIEW_FAMILY",
    "DATA.PATCH",
    "DATA.FREQUENCY",
    "DATA.COLOR_SPACE",
    "DATA.CHANNEL_SPLIT",
    "DATA.LEARNED_VIEWS",
    "DATA.MULTI_CROP",
)


def scaled_lr(cfg) -> float:
    """SOLVER.BASE_LR (for a batch of 256) at SOLVER.BATCH_SIZE by SOLVER.LR_SCALING."""
    return batch_scaled_lr(cfg.SOLVER.BASE_LR, cfg.SOLVER.BATCH_SIZE, cfg.SOLVER.LR_SCALING)


def model_cfg_for_run(cfg, total_iters: int):
    """The config the model is built from: MODEL.MOMENTUM rescaled to the run's length where
    MODEL.MOMENTUM_REFERENCE_ITERS asks (models/ema.py run_length_momentum); else `cfg`."""
    if not cfg.MODEL.MOMENTUM_REFERENCE_ITERS:
        return cfg
    scaled = cfg.clone()
    scaled.defrost()
    scaled.MODEL.MOMENTUM = run_length_momentum(
        cfg.MODEL.MOMENTUM, cfg.MODEL.MOMENTUM_REFERENCE_ITERS, total_iters
    )
    scaled.freeze()
    return scaled


LR_GRANULARITIES = ("iteration", "epoch")


def stepped_by(granularity: str, schedule, iters_per_epoch: int):
    """`schedule` (of the iteration) as it is, or held at each epoch's first value: SimSiam's
    release sets its lr once per epoch (adjust_learning_rate at each epoch's start)."""
    if granularity not in LR_GRANULARITIES:
        raise ConfigError(
            f"SOLVER.LR_GRANULARITY {granularity!r}: expected one of {LR_GRANULARITIES}"
        )
    if granularity == "iteration":
        return schedule
    return lambda it: schedule(it // iters_per_epoch * iters_per_epoch)


def build_optimizer(cfg, model, iters_per_epoch: int, total_iters: int):
    """SOLVER.OPTIMIZER (SGD, or LARS) on the trainable parameters (query encoder, jigsaw head,
    predictor), lr scaled linearly with the global batch, per-iteration cosine with the recipe's
    warm-up (not for a SOLVER.PREDICTOR_FIXED_LR group)."""
    lr = scaled_lr(cfg)
    optimizer = build_solver(cfg, model, lr)  # SGD (one group), or LARS / a fixed-lr predictor
    warmup_epochs = cfg.SOLVER.WARMUP_EPOCHS
    if warmup_epochs < 0:
        warmup_epochs = 5 if cfg.SOLVER.BATCH_SIZE > 256 else 0
    warmup_iters = int(warmup_epochs * iters_per_epoch)
    rule = cfg.SOLVER.WARMUP_RULE
    schedule = warmup_cosine(1.0, warmup_iters, total_iters, rule, cfg.SOLVER.COSINE_FLOOR)
    if cfg.SOLVER.LR_STEPS:  # InsDis's steps, in epochs
        schedule = warmup_steps(
            warmup_iters,
            [e * iters_per_epoch for e in cfg.SOLVER.LR_STEPS],
            gamma=cfg.SOLVER.LR_STEP_GAMMA,
            rule=rule,
        )
    schedule = stepped_by(cfg.SOLVER.LR_GRANULARITY, schedule, iters_per_epoch)
    # One factor per parameter group: SimSiam's predictor keeps a fixed rate (models/optim.py).
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, group_lr_factors(optimizer, schedule))
    return optimizer, scheduler


def mixed_precision(mode: str, device: str, cpu_amp: bool = False):
    """(autocast dtype or None, grad scaler): bf16 needs no scaler, fp16 does. A CPU runs fp32,
    or bf16 with `cpu_amp` (SOLVER.CPU_AMP) where it computes bf16 natively."""
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}
    if mode not in dtypes:
        raise ConfigError(f"SOLVER.AMP {mode!r}: expected one of {list(dtypes)}")
    if device == "cuda":
        dtype = dtypes[mode]
    else:
        dtype = torch.bfloat16 if cpu_amp and cpu_has_native_bf16() else None
        if cpu_amp and dtype is None and du.get_rank() == 0:
            print(cpu_amp_note(), flush=True)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    return dtype, scaler


def diverged(output_dir: str, what: str, iteration: int, lr: float) -> TrainingDivergedError:
    """The error of a run whose loss or weights stopped being finite at `iteration`."""
    checkpoint = last_checkpoint(output_dir)
    kept = (
        f"the last checkpoint, written before, is {checkpoint}"
        if checkpoint
        else "no checkpoint was written before it"
    )
    return TrainingDivergedError(
        f"pretraining diverged at iteration {iteration}: {what} (lr {lr:.4g}); nothing of it was "
        f"saved and {kept}. Start over with a lower SOLVER.BASE_LR (--force), or --resume to "
        "replay from that checkpoint"
    )


def check_finite_loss(
    loss: torch.Tensor, iteration: int, output_dir: str, lr: float, device: str
) -> None:
    """TrainingDivergedError where any process's loss is NaN or infinite: every process stops
    at the same step, before the backward pass."""
    finite = float(torch.isfinite(loss.detach()).item())
    if du.is_distributed():
        finite = du.all_reduce_mean(finite, device)  # below 1 where any process diverged
    if finite < 1.0:
        raise diverged(output_dir, f"the loss is {loss.item()}", iteration, lr)


class PretrainStep(NamedTuple):
    out: Any  # the method's StepOutput (models/method.py)
    epoch: int
    skipped: int  # unreadable images met in this batch
    view_time: float  # seconds spent making the batch's views


class ProgressHook(Hook):
    """Pretraining's progress line and metrics every LOG_PERIOD steps and at the last."""

    def __init__(self, progress: Progress, period: int, scheduler):
        self.progress, self.period, self.scheduler = progress, period, scheduler

    def after_step(self, loop: TrainLoop) -> None:
        step = loop.output
        self.progress.add(step.out, loop.data_time + step.view_time, step.skipped)
        if loop.iteration % self.period == 0 or loop.iteration == loop.max_iter:
            self.progress.report(
                loop.iteration, step.epoch, self.scheduler.get_last_lr()[0], loop.device
            )

    def after_train(self, loop: TrainLoop) -> None:
        self.progress.close()


class KnnHook(Hook):
    """kNN accuracy of the method's readout backbone (or its embedding, EVAL.KNN_FEATURES)
    every EVAL.KNN_PERIOD steps and at the last, computed on rank 0 while the others wait."""

    def __init__(self, cfg, model, log):
        self.cfg, self.model, self.log = cfg, model, log

    def after_step(self, loop: TrainLoop) -> None:
        period = self.cfg.EVAL.KNN_PERIOD
        if loop.iteration % period and loop.iteration != loop.max_iter:
            return
        if du.is_main_process():
            features = (
                self.model.query_encoder
                if self.cfg.EVAL.KNN_FEATURES == "embedding"
                else self.model.readout_backbone(self.cfg)
            )
            acc = knn_of_config(features, self.cfg, loop.device)["top1"]
            self.log.write(loop.iteration, {"knn_acc": acc})
            print(f"iter {loop.iteration}: kNN top-1 {acc:.2f}%", flush=True)
        if du.is_distributed():
            torch.distributed.barrier()


def train(cfg, resume: bool = False, force: bool = False) -> str:
    """Runs the pretraining `cfg` describes; returns the path of the final checkpoint ("" when a
    scheduler's signal stopped it). `resume`: continue the run in OUTPUT_DIR; `force`: start over
    in a folder that holds one (pretrain/engine/run_folder.py)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    du.init_from_env(device)
    rank, world_size = du.get_rank(), du.get_world_size()
    # The folder first: the data check below writes its result there.
    start = open_run_folder(cfg, MODEL_KEYS, "iteration", resume=resume, force=force)
    method = method_class(cfg)
    method.check_cfg(cfg)  # its settings, data ones included, before the data check's cost
    images = checked_images(cfg, rank, world_size)  # less the bad ones (DATA.CHECK)
    pipeline = ViewPipeline(cfg, images, device, method.views)  # what its step reads
    samples = len(pipeline.dataset)  # images, or instances with DATA.VIEWS_FROM folder
    iters_per_epoch = batches_per_epoch(samples, cfg.SOLVER.BATCH_SIZE, cfg.DATA.ROOT)
    total_iters = cfg.SOLVER.MAX_ITER or cfg.SOLVER.EPOCHS * iters_per_epoch
    amp_dtype, scaler = mixed_precision(cfg.SOLVER.AMP, device, cfg.SOLVER.CPU_AMP)

    torch.manual_seed(cfg.SEED)  # identical initial weights and queue on every process
    # MODEL.METHOD's model (models/method.py's contract), its EMA momentum for this run length
    model = build_model(model_cfg_for_run(cfg, total_iters))
    model.start_run(samples, iters_per_epoch, total_iters)
    if cfg.MODEL.SYNC_BN:
        model = convert_to_sync_bn(model, device)
    model = model.to(device)
    if device == "cuda" or amp_dtype is not None:  # oneDNN's bf16 kernels want it too
        model = model.to(memory_format=torch.channels_last)
    optimizer, scheduler = build_optimizer(cfg, model, iters_per_epoch, total_iters)

    start_iter = start.step("iteration")
    if start.state:
        state = start.state
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["grad_scaler"])
        if rank < len(state["rng"]):  # a resume on more processes leaves the new ones seeded
            set_rng_state(state["rng"][rank])
        else:
            torch.manual_seed(cfg.SEED + rank + start_iter)
        print(f"[rank {rank}] resumed from {start.checkpoint} at iteration {start_iter}")
    else:
        torch.manual_seed(cfg.SEED + rank)
    if du.is_main_process():
        print(
            pretrain_start_line(
                cfg, samples, device, world_size, total_iters, start_iter, scaled_lr(cfg)
            ),
            flush=True,
        )

    ddp = (
        DistributedDataParallel(
            model, device_ids=[torch.cuda.current_device()] if device == "cuda" else None
        )
        if world_size > 1
        else model
    )
    step_model = torch.compile(ddp) if cfg.SOLVER.COMPILE else ddp

    def checkpoint(iteration: int, name: str) -> None:
        # Weights the step made non-finite (an infinite gradient under a finite loss) are never
        # saved: the last checkpoint stays the one to go back to. The same on every process.
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise diverged(
                cfg.OUTPUT_DIR,
                "the weights hold NaN or infinite values",
                iteration,
                scheduler.get_last_lr()[0],
            )
        rngs = [None] * world_size
        if world_size > 1:
            torch.distributed.all_gather_object(rngs, rng_state())
        else:
            rngs = [rng_state()]
        if du.is_main_process():
            save_checkpoint(
                cfg.OUTPUT_DIR,
                name,
                {
                    "format": CHECKPOINT_FORMAT,
                    "arch": cfg.MODEL.ARCH,
                    "cfg": cfg.dump(),
                    "iteration": iteration,
                    "epoch": iteration // iters_per_epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "grad_scaler": scaler.state_dict(),
                    "rng": rngs,
                },
            )

    progress = Progress(
        cfg.OUTPUT_DIR,
        cfg.SOLVER.BATCH_SIZE,
        model.num_negatives(cfg.SOLVER.BATCH_SIZE),
        model.info_nce_terms,
        start_iter,
        total_iters,
        cfg.MODEL.ER.KAPPA,
    )

    def step(epoch_batch, iteration: int) -> PretrainStep:
        epoch, (batch, bad) = epoch_batch
        began = time.perf_counter()
        views, undecodable = pipeline.views(batch)
        skipped = pipeline.record_bad(bad + undecodable)  # files not met before
        view_time = time.perf_counter() - began
        # The step's own randomness (shuffle-BN's permutation, JigSaw's patch order) from a
        # seed of (run, rank, iteration): a resumed run replays it exactly, whatever else
        # (e.g. a new DataLoader's base seed) drew from the global generator meanwhile.
        torch.manual_seed((cfg.SEED * 1_000_003 + rank) * 1_000_003 + iteration)
        with torch.autocast(
            device_type=device, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            out = step_model(*views)
        check_finite_loss(
            out.loss, iteration + 1, cfg.OUTPUT_DIR, scheduler.get_last_lr()[0], device
        )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(out.loss).backward()
        if model.adjusts_gradients:  # SwAV, DINO: frozen layers, clipping
            scaler.unscale_(optimizer)
            model.before_optimizer_step()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        model.after_optimizer_step()  # EMA targets, step counters
        return PretrainStep(out, epoch, skipped, view_time)

    batches = seeded_batches(
        pipeline.dataset,
        cfg.SOLVER.BATCH_SIZE,
        cfg.SEED,
        start_iter,
        rank,
        world_size,
        num_workers=cfg.DATA.NUM_WORKERS,
        collate_fn=pipeline.collate,
        pin_memory=pipeline.pin_memory,
    )
    hooks = [ProgressHook(progress, cfg.LOG_PERIOD, scheduler)]
    if cfg.EVAL.KNN_PERIOD:
        hooks.append(KnnHook(cfg, model, progress.log))
    # A checkpoint at every epoch's end too: an epoch is the unit people resume from.
    loop = TrainLoop(
        step,
        lambda done: checkpoint(done, f"checkpoint_{done:08d}.pth"),
        start_iter,
        total_iters,
        lambda done: done % cfg.SOLVER.CHECKPOINT_PERIOD == 0 or done % iters_per_epoch == 0,
        hooks,
        device,
    )
    if not loop.run(batches):
        return ""  # a scheduler's signal: checkpointed; submitit requeues the job
    iteration = loop.iteration
    checkpoint(iteration, "model_final.pth")
    if du.is_main_process():
        print(
            pretrain_end_line(
                os.path.join(cfg.OUTPUT_DIR, "model_final.pth"),
                convertible=not cfg.MODEL.CMC.ENABLED,
            ),
            flush=True,
        )
    return os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
