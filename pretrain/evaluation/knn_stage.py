"""The kNN readout as a stage with a config, like the others: tools/knn.py maps its flags onto
these keys, and slurm/submit.py knn takes them as KEY VALUE pairs (or a YAML file)."""

from __future__ import annotations

from fvcore.common.config import CfgNode as CN

from ..common.errors import CheckpointError, ConfigError
from ..config import merge_overrides
from ..models.backbone import UnknownStemError
from .backbone_loading import BackboneLoadError
from .knn import knn_probe
from .readout_checks import warn_random_backbone

# The names are the other stages' (pretrain/config.py): the neighbours are DATA.ROOT, the images
# classified DATA.VAL_ROOT, the weights MODEL.WEIGHTS.
_C = CN()
_C.SEED = 0  # initialisation of a random backbone
_C.MODEL = CN()
_C.MODEL.ARCH = ""  # "" = the checkpoint's own (with its MODEL.WIDTH); resnet50 for a random one
_C.MODEL.WIDTH = 1
_C.MODEL.STEM = ""  # "" = the checkpoint's own; imagenet for a random backbone
_C.MODEL.WEIGHTS = ""  # any format tools/convert.py reads; "" = random init (the baseline)
_C.MODEL.ENCODER = "query"  # or "key": which encoder of a MoCo checkpoint
_C.DATA = CN()
_C.DATA.ROOT = ""  # labelled class folders: the neighbours
_C.DATA.VAL_ROOT = ""  # labelled class folders: the images classified
_C.DATA.CROP_SIZE = 0  # 0: the checkpoint's pretraining crop (its DATA.CROP_SIZE), else 224
_C.DATA.LIMIT = 0  # neighbour images; 0 = all
_C.DATA.VAL_LIMIT = 0
_C.DATA.NUM_WORKERS = 2
# Resize to CROP_SIZE / CROP_FRACTION, centre-crop CROP_SIZE; 1.0 shows the whole image
# (pretrain/config.py EVAL.CROP_FRACTION).
_C.DATA.CROP_FRACTION = 0.875
_C.KNN = CN()
_C.KNN.K = 200  # neighbours that vote
_C.KNN.TEMPERATURE = 0.07  # each votes exp(cosine / T)


def load_knn_cfg(config_file: str = "", opts=()) -> CN:
    """Defaults <- config file <- KEY VALUE overrides, frozen; both image folders are required."""
    cfg = merge_overrides(_C.clone(), config_file, opts)
    for key in ("ROOT", "VAL_ROOT"):
        if not cfg.DATA[key]:
            raise ConfigError(f"DATA.{key}: required (labelled class folders)")
    cfg.freeze()
    return cfg


def run_knn(cfg) -> dict:
    """knn_probe of the config: {"top1" (%), "test_images", "k", "arch", "checkpoint", "stem"}."""
    model, data = cfg.MODEL, cfg.DATA
    try:
        return knn_probe(
            model.ARCH,
            data.ROOT,
            data.VAL_ROOT,
            model.WEIGHTS,
            data.CROP_SIZE,
            model.ENCODER,
            model.WIDTH,
            model.STEM,
            data.LIMIT,
            data.VAL_LIMIT,
            cfg.KNN.K,
            cfg.SEED,
            data.NUM_WORKERS,
            cfg.KNN.TEMPERATURE,
            data.CROP_FRACTION,
        )
    except BackboneLoadError as err:
        raise CheckpointError(str(err)) from None
    except UnknownStemError as err:
        raise ConfigError(str(err)) from None


def report(cfg, result: dict) -> str:
    """The line tools/knn.py prints."""
    return (
        f"kNN (k={cfg.KNN.K}) top-1: {result['top1']:.2f}%  "
        f"[{cfg.MODEL.WEIGHTS or 'random init'}, {result['arch']}, {result['stem']} stem, "
        f"{result['crop']} px]"
    )


def run_stage(cfg, resume: bool = False) -> dict:
    """The knn stage (pretrain/stages.py): nothing to resume, one pass over the features."""
    warn_random_backbone(cfg.MODEL.WEIGHTS, "MODEL.WEIGHTS")
    result = run_knn(cfg)
    print(report(cfg, result), flush=True)
    return result
