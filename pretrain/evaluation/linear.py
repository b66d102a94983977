"""Linear readout: a linear classifier trained on the frozen backbone (BN in eval mode), with the
reference recipe (MoCo's main_lincls / PyContrast): 60 epochs, SGD lr 30, momentum 0.9, wd 0,
x0.2 at epochs 30 / 40 / 50, batch 256, RandomResizedCrop + flip for training, centre crop for
validation. One checkpoint per epoch (atomic); --resume continues from the last one."""
from __future__ import annotations

import json
import os
import time

import torch
import torch.nn as nn
from fvcore.common.config import CfgNode as CN

from ..config import merge_overrides
from ..engine.checkpoint import last_checkpoint, load_checkpoint, save_checkpoint
from ..engine.progress import METRICS_FILE
from .backbone_loading import load_backbone
from .data import eval_transform, folder_classes, labelled_folder, train_transform
from .readout_checks import require_training_steps, warn_random_backbone

_C = CN()
_C.ARCH = "resnet50"
_C.WIDTH = 1
# The backbone's stem (pretrain/models/backbone.py STEMS); "": the checkpoint's own (a pretraining
# checkpoint records it), the ImageNet stem for a random backbone.
_C.STEM = ""
_C.CHECKPOINT = ""  # pretrained weights, any format tools/convert.py reads; "" = random init
_C.ENCODER = "query"
_C.TRAIN_ROOT = ""
_C.VAL_ROOT = ""
_C.TRAIN_LIMIT = 0
_C.VAL_LIMIT = 0
_C.CROP_SIZE = 224
_C.EPOCHS = 60
_C.BATCH_SIZE = 256
_C.LR = 30.0
_C.MILESTONES = (30, 40, 50)
_C.GAMMA = 0.2
_C.MOMENTUM = 0.9
_C.WEIGHT_DECAY = 0.0
_C.NUM_WORKERS = 8
_C.SEED = 0
_C.OUTPUT_DIR = "output/lincls"


def get_lincls_cfg() -> CN:
    return _C.clone()


def load_lincls_cfg(config_file: str = "", opts=()) -> CN:
    """Defaults <- config file <- KEY VALUE overrides, frozen; a bad file or key is a one-line
    error naming it."""
    cfg = merge_overrides(get_lincls_cfg(), config_file, opts)
    cfg.freeze()
    return cfg


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


def run_linear_readout(cfg, resume: bool = False) -> float:
    """Trains the readout; returns the final validation top-1 (%)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.SEED)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    train_set = labelled_folder(cfg.TRAIN_ROOT, train_transform(cfg.CROP_SIZE), cfg.TRAIN_LIMIT)
    val_set = labelled_folder(cfg.VAL_ROOT, eval_transform(cfg.CROP_SIZE), cfg.VAL_LIMIT)
    require_training_steps(len(train_set), cfg.BATCH_SIZE, cfg.EPOCHS, "TRAIN_ROOT",
                           cfg.TRAIN_ROOT)
    warn_random_backbone(cfg.CHECKPOINT, "CHECKPOINT")
    backbone, dim, _ = load_backbone(cfg.ARCH, cfg.CHECKPOINT, cfg.ENCODER, cfg.WIDTH,
                                  cfg.STEM)
    model = LinearReadout(backbone, dim, len(folder_classes(train_set))).to(device)
    optimizer = torch.optim.SGD(model.classifier.parameters(), lr=cfg.LR * cfg.BATCH_SIZE / 256,
                                momentum=cfg.MOMENTUM, weight_decay=cfg.WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(cfg.MILESTONES), cfg.GAMMA)
    start_epoch = 0
    previous = last_checkpoint(cfg.OUTPUT_DIR) if resume else None
    if previous:
        state = load_checkpoint(previous)
        model.classifier.load_state_dict(state["classifier"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start_epoch = state["epoch"]
    loader_args = dict(batch_size=cfg.BATCH_SIZE, num_workers=cfg.NUM_WORKERS,
                       pin_memory=device == "cuda")
    train_loader = torch.utils.data.DataLoader(train_set, shuffle=True, drop_last=True,
                                               **loader_args)
    val_loader = torch.utils.data.DataLoader(val_set, **loader_args)
    acc = 0.0
    with open(os.path.join(cfg.OUTPUT_DIR, METRICS_FILE), "a") as log:
        for epoch in range(start_epoch, cfg.EPOCHS):
            model.train()
            start, seen, loss_sum = time.perf_counter(), 0, 0.0
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
            record = {"epoch": epoch + 1, "loss": loss_sum / max(1, seen), "val_top1": acc,
                      "img_per_s": seen / (time.perf_counter() - start)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(f"epoch {epoch + 1}/{cfg.EPOCHS} loss {record['loss']:.4f} "
                  f"val top-1 {acc:.2f}% ({record['img_per_s']:.0f} img/s)", flush=True)
            save_checkpoint(cfg.OUTPUT_DIR, f"checkpoint_{epoch + 1:08d}.pth", {
                "epoch": epoch + 1, "classifier": model.classifier.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(), "val_top1": acc})
    return acc
