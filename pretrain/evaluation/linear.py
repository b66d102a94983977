"""Linear readout: a linear classifier trained on the frozen backbone (BN in eval mode), with the
reference recipe (MoCo's main_lincls / PyContrast): 60 epochs, SGD lr 30, momentum 0.9, wd 0,
x0.2 at epochs 30 / 40 / 50, batch 256, RandomResizedCrop + flip for training, centre crop for
validation. One checkpoint per epoch (atomic); --resume continues from the last one. The config's
keys and defaults: pretrain/config.py (get_lincls_cfg)."""
from __future__ import annotations

import time

import torch
import torch.nn as nn

from ..config import get_lincls_cfg, load_lincls_cfg  # noqa: F401 (the stage's config, from here)
from ..engine.checkpoint import rng_state, save_checkpoint, set_rng_state
from ..engine.metrics import MetricsLog
from ..engine.progress import Eta
from ..engine.run_folder import open_run_folder
from ..engine.schedule import multistep_lr
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
def top1(model, loader, device) -> float:
    model.eval()
    correct = total = 0
    for images, labels in loader:
        logits = model(images.to(device))
        correct += (logits.argmax(1).cpu() == labels).sum().item()
        total += len(labels)
    return 100.0 * correct / max(1, total)


def run_linear_readout(cfg, resume: bool = False, force: bool = False) -> float:
    """Trains the readout; returns the final validation top-1 (%). `resume` / `force`: as
    pretraining's (pretrain/engine/run_folder.py)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    solver = cfg.SOLVER
    torch.manual_seed(cfg.SEED)
    train_set = labelled_folder(cfg.DATA.ROOT, train_transform(cfg.DATA.CROP_SIZE),
                                cfg.DATA.LIMIT)
    val_set = labelled_folder(cfg.DATA.VAL_ROOT, eval_transform(cfg.DATA.CROP_SIZE),
                              cfg.DATA.VAL_LIMIT)
    require_training_steps(len(train_set), solver.BATCH_SIZE, solver.EPOCHS, "DATA.ROOT",
                           cfg.DATA.ROOT)
    warn_random_backbone(cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS")
    backbone, dim, *_ = load_backbone(cfg.MODEL.ARCH, cfg.MODEL.WEIGHTS, cfg.MODEL.ENCODER,
                                      cfg.MODEL.WIDTH, cfg.MODEL.STEM)
    model = LinearReadout(backbone, dim, len(folder_classes(train_set))).to(device)
    start = open_run_folder(cfg, MODEL_KEYS, "epoch", resume=resume, force=force)
    optimizer = torch.optim.SGD(model.classifier.parameters(),
                                lr=solver.BASE_LR * solver.BATCH_SIZE / 256,
                                momentum=solver.MOMENTUM, weight_decay=solver.WEIGHT_DECAY)
    scheduler = multistep_lr(optimizer, solver.MILESTONES, solver.GAMMA)
    start_epoch = start.step("epoch")
    if start.state:
        model.classifier.load_state_dict(start.state["classifier"])
        optimizer.load_state_dict(start.state["optimizer"])
        scheduler.load_state_dict(start.state["scheduler"])
        set_rng_state(start.state["rng"])
        print(f"resumed from {start.checkpoint} at epoch {start_epoch}", flush=True)
    loader_args = dict(batch_size=solver.BATCH_SIZE, num_workers=cfg.DATA.NUM_WORKERS,
                       pin_memory=device == "cuda")
    # Shuffled by torch's global generator, whose state each checkpoint stores: a resume at an
    # epoch's end draws the order the uninterrupted run drew.
    train_loader = torch.utils.data.DataLoader(train_set, shuffle=True, drop_last=True,
                                               **loader_args)
    val_loader = torch.utils.data.DataLoader(val_set, **loader_args)
    acc = 0.0
    eta = Eta(start_epoch, solver.EPOCHS)
    with MetricsLog(cfg.OUTPUT_DIR, "lincls", step_key="epoch",
                    resumed_at=start_epoch if start.state else None) as log:
        for epoch in range(start_epoch, solver.EPOCHS):
            model.train()
            began, seen, loss_sum = time.perf_counter(), 0, 0.0
            for images, labels in train_loader:
                logits = model(images.to(device, non_blocking=True))
                loss = nn.functional.cross_entropy(logits, labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                seen += len(labels)
                loss_sum += loss.item() * len(labels)
            scheduler.step()
            acc = top1(model, val_loader, device)
            record = {"loss": loss_sum / max(1, seen), "val_top1": acc,
                      "img_per_s": seen / (time.perf_counter() - began)}
            log.write(epoch + 1, record)
            print(f"epoch {epoch + 1}/{solver.EPOCHS} loss {record['loss']:.4f} "
                  f"val top-1 {acc:.2f}% ({record['img_per_s']:.0f} img/s, "
                  f"eta {eta.minutes(epoch + 1):.1f} min)", flush=True)
            save_checkpoint(cfg.OUTPUT_DIR, f"checkpoint_{epoch + 1:08d}.pth", {
                "cfg": cfg.dump(), "epoch": epoch + 1,
                "classifier": model.classifier.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng_state(), "val_top1": acc})
    return acc
