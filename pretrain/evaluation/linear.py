"""Linear readout: a linear classifier trained on the frozen backbone (BN in eval mode), with the
reference recipe (MoCo's main_lincls / PyContrast): 60 epochs, SGD lr 30, momentum 0.9, wd 0,
x0.2 at epochs 30 / 40 / 50, batch 256, RandomResizedCrop + flip for training, centre crop for
validation. It steps on the project's training loop (engine/loop.py): a checkpoint (atomic)
at each epoch's end and wherever a scheduler's signal stops it; --resume continues from the last
one exactly. The config's
keys and defaults: pretrain/config.py (get_lincls_cfg)."""

from __future__ import annotations

import time

import torch
import torch.nn as nn

from ..config import get_lincls_cfg, load_lincls_cfg  # noqa: F401 (the stage's config, from here)
from ..engine.checkpoint import rng_state, save_checkpoint, set_rng_state
from ..engine.metrics import MetricsLog
from ..engine.loop import Hook, TrainLoop
from ..engine.progress import Eta
from ..engine.run_folder import open_run_folder
from ..engine.sampler import batches_per_epoch, seeded_batches
from ..engine.schedule import batch_scaled_lr, multistep_lr
from .backbone_loading import load_backbone
from .data import eval_transform, folder_classes, labelled_folder, train_transform
from .readout_checks import require_training_steps, warn_random_backbone

# A resume must not change these (pretrain/engine/run_folder.py).
MODEL_KEYS = ("SEED", "MODEL", "DATA.CROP_SIZE")


class LinearReadout(nn.Module):
    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone.requires_grad_(False)
        self.classifier = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()  # frozen features: BN statistics stay those of pretraining
        return self

    def forward(self, images):
        with torch.no_grad():
            features = self.backbone(images)
        return self.classifier(features.float())


@torch.no_grad()
def predict(model, loader, device) -> tuple[list[int], list[int]]:
    """(predicted class, label) of every image of `loader`, in its order (eval mode)."""
    model.eval()
    predicted, labels = [], []
    for images, targets in loader:
        predicted += model(images.to(device)).argmax(1).cpu().tolist()
        labels += targets.tolist()
    return predicted, labels


def top1(model, loader, device) -> float:
    predicted, labels = predict(model, loader, device)
    return 100.0 * sum(p == t for p, t in zip(predicted, labels)) / max(1, len(labels))


def run_linear_readout(cfg, resume: bool = False, force: bool = False) -> float | None:
    """Trains the readout; returns the final validation top-1 (%), or None when a scheduler's
    signal stopped it (checkpointed; submitit requeues the job). `resume` / `force`: as
    pretraining's (pretrain/engine/run_folder.py)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    solver = cfg.SOLVER
    torch.manual_seed(cfg.SEED)
    train_set = labelled_folder(cfg.DATA.ROOT, train_transform(cfg.DATA.CROP_SIZE), cfg.DATA.LIMIT)
    val_set = labelled_folder(
        cfg.DATA.VAL_ROOT, eval_transform(cfg.DATA.CROP_SIZE), cfg.DATA.VAL_LIMIT
    )
    require_training_steps(
        len(train_set), solver.BATCH_SIZE, solver.EPOCHS, "DATA.ROOT", cfg.DATA.ROOT
    )
    warn_random_backbone(cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS")
    backbone, dim, *_ = load_backbone(
        cfg.MODEL.ARCH, cfg.MODEL.WEIGHTS, cfg.MODEL.ENCODER, cfg.MODEL.WIDTH, cfg.MODEL.STEM
    )
    model = LinearReadout(backbone, dim, len(folder_classes(train_set))).to(device)
    start = open_run_folder(cfg, MODEL_KEYS, "epoch", resume=resume, force=force)
    optimizer = torch.optim.SGD(
        model.classifier.parameters(),
        lr=batch_scaled_lr(solver.BASE_LR, solver.BATCH_SIZE),
        momentum=solver.MOMENTUM,
        weight_decay=solver.WEIGHT_DECAY,
    )
    scheduler = multistep_lr(optimizer, solver.MILESTONES, solver.GAMMA)  # stepped per epoch
    per_epoch = batches_per_epoch(len(train_set), solver.BATCH_SIZE, cfg.DATA.ROOT)
    start_iter = 0
    if start.state:
        # Checkpoints written before the readout stepped by iteration hold epochs only.
        start_iter = start.state.get("iteration", start.state["epoch"] * per_epoch)
        model.classifier.load_state_dict(start.state["classifier"])
        optimizer.load_state_dict(start.state["optimizer"])
        scheduler.load_state_dict(start.state["scheduler"])
        set_rng_state(start.state["rng"])
        print(
            f"resumed from {start.checkpoint} at iteration {start_iter} (epoch "
            f"{start_iter / per_epoch:g})",
            flush=True,
        )
    loader_args = dict(num_workers=cfg.DATA.NUM_WORKERS, pin_memory=device == "cuda")
    # Each epoch's order is a function of (SEED, epoch) (engine/sampler.py): a resume anywhere,
    # mid-epoch included, draws the batches the uninterrupted run drew.
    batches = seeded_batches(
        train_set,
        solver.BATCH_SIZE,
        cfg.SEED,
        start_iter,
        with_epoch=False,
        resumed_rng=start.state["rng"] if start.state else None,
        **loader_args,
    )
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=solver.BATCH_SIZE, **loader_args)

    def step(epoch_batch, iteration: int) -> tuple[float, int]:
        _, (images, labels) = epoch_batch
        model.train()
        logits = model(images.to(device, non_blocking=True))
        loss = nn.functional.cross_entropy(logits, labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (iteration + 1) % per_epoch == 0:
            scheduler.step()
        return loss.item(), len(labels)

    log = MetricsLog(
        cfg.OUTPUT_DIR,
        "lincls",
        step_key="epoch",
        resumed_at=start.step("epoch") if start.state else None,
    )
    evaluation = EpochEnd(
        log,
        per_epoch,
        solver.EPOCHS,
        start_iter,
        lambda: top1(model, val_loader, device),
        start.state.get("window") if start.state else None,
    )

    def checkpoint(done: int) -> None:
        save_checkpoint(
            cfg.OUTPUT_DIR,
            f"checkpoint_{done:08d}.pth",
            {
                "cfg": cfg.dump(),
                "iteration": done,
                "epoch": done // per_epoch,
                "classifier": model.classifier.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
                "val_top1": evaluation.acc,
                "window": evaluation.window(),
            },
        )

    total = solver.EPOCHS * per_epoch
    loop = TrainLoop(
        step,
        checkpoint,
        start_iter,
        total,
        lambda done: done % per_epoch == 0,
        [evaluation],
        device,
    )
    finished = loop.run(batches)
    log.close()
    if not finished:
        return None
    if start_iter < total:  # the last epoch's checkpoint (a finished run resumed: already there)
        checkpoint(total)
    return evaluation.acc if evaluation.acc is not None else start.state.get("val_top1", 0.0)


class EpochEnd(Hook):
    """The readout's epoch line: at each epoch's end, the mean training loss of the epoch, the
    validation top-1 and img/s, printed and logged; the running sums go into a mid-epoch
    checkpoint (`window`), so a resume there reports the epoch the uninterrupted run reported."""

    def __init__(
        self,
        log: MetricsLog,
        per_epoch: int,
        epochs: int,
        start_iter: int,
        evaluate,
        window: dict | None,
    ):
        self.log, self.per_epoch, self.epochs, self.evaluate = log, per_epoch, epochs, evaluate
        self.eta = Eta(start_iter / per_epoch, epochs)
        self.acc = None
        self.seen, self.loss_sum = (window["seen"], window["loss_sum"]) if window else (0, 0.0)
        self.began = time.perf_counter()

    def window(self) -> dict:
        return {"seen": self.seen, "loss_sum": self.loss_sum}

    def after_step(self, loop) -> None:
        loss, images = loop.output
        self.seen += images
        self.loss_sum += loss * images
        if loop.iteration % self.per_epoch:
            return
        epoch = loop.iteration // self.per_epoch
        self.acc = self.evaluate()
        record = {
            "loss": self.loss_sum / max(1, self.seen),
            "val_top1": self.acc,
            "img_per_s": self.seen / (time.perf_counter() - self.began),
        }
        self.log.write(epoch, record)
        print(
            f"epoch {epoch}/{self.epochs} loss {record['loss']:.4f} val top-1 {self.acc:.2f}% "
            f"({record['img_per_s']:.0f} img/s, eta {self.eta.minutes(epoch):.1f} min)",
            flush=True,
        )
        self.seen, self.loss_sum, self.began = 0, 0.0, time.perf_counter()
