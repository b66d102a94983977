"""The kNN readout as a stage with a config, like the others: tools/knn.py maps its flags onto
these keys, and slurm/submit.py knn takes them as KEY VALUE pairs (or a YAML file)."""
from __future__ import annotations

import torch
from fvcore.common.config import CfgNode as CN

from ..common.errors import CheckpointError, ConfigError
from ..config import merge_overrides
from ..models.backbone import UnknownStemError
from .backbone_loading import BackboneLoadError, load_backbone
from .knn import knn_accuracy

_C = CN()
_C.SEED = 0  # initialisation of a random backbone
_C.MODEL = CN()
_C.MODEL.ARCH = "resnet50"
_C.MODEL.WIDTH = 1
_C.MODEL.STEM = ""  # "" = the checkpoint's own; imagenet for a random backbone
_C.MODEL.CHECKPOINT = ""  # any format tools/convert.py reads; "" = random init (the baseline)
_C.MODEL.ENCODER = "query"  # or "key": which encoder of a MoCo checkpoint
_C.DATA = CN()
_C.DATA.TRAIN_ROOT = ""  # labelled class folders: the neighbours
_C.DATA.TEST_ROOT = ""  # labelled class folders: the images classified
_C.DATA.CROP_SIZE = 224
_C.DATA.TRAIN_LIMIT = 0  # images; 0 = all
_C.DATA.TEST_LIMIT = 0
_C.DATA.NUM_WORKERS = 2
_C.KNN = CN()
_C.KNN.K = 200  # neighbours that vote


def load_knn_cfg(config_file: str = "", opts=()) -> CN:
    """Defaults <- config file <- KEY VALUE overrides, frozen; both image folders are required."""
    cfg = merge_overrides(_C.clone(), config_file, opts)
    for key in ("TRAIN_ROOT", "TEST_ROOT"):
        if not cfg.DATA[key]:
            raise ConfigError(f"DATA.{key}: required (labelled class folders)")
    cfg.freeze()
    return cfg


def run_knn(cfg) -> tuple[float, str]:
    """Top-1 accuracy (%) of the k-NN readout and the stem the backbone was built with."""
    torch.manual_seed(cfg.SEED)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = cfg.MODEL
    try:
        backbone, _, stem = load_backbone(model.ARCH, model.CHECKPOINT, model.ENCODER, model.WIDTH,
                                          model.STEM)
    except BackboneLoadError as err:
        raise CheckpointError(str(err)) from None
    except UnknownStemError as err:
        raise ConfigError(str(err)) from None
    data = cfg.DATA
    accuracy = knn_accuracy(backbone.to(device), data.TRAIN_ROOT, data.TEST_ROOT, data.CROP_SIZE,
                            device, data.TRAIN_LIMIT, data.TEST_LIMIT, cfg.KNN.K,
                            data.NUM_WORKERS)
    return accuracy, stem


def report(cfg, accuracy: float, stem: str) -> str:
    """The line tools/knn.py prints."""
    return (f"kNN (k={cfg.KNN.K}) top-1: {accuracy:.2f}%  "
            f"[{cfg.MODEL.CHECKPOINT or 'random init'}, {stem} stem]")


def run_stage(cfg, resume: bool = False) -> float:
    """The knn stage (pretrain/stages.py): nothing to resume, one pass over the features."""
    accuracy, stem = run_knn(cfg)
    print(report(cfg, accuracy, stem), flush=True)
    return accuracy
