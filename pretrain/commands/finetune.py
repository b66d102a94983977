"""Semi-supervised fine-tuning (SimCLR's protocol): the whole pretrained backbone and a new linear
classifier trained on a labelled fraction of class folders (ImageNet layout), then top-1 on the
validation folder. Without MODEL.WEIGHTS: the random-init baseline on the same fraction.

    python tools/finetune.py [--config-file CFG] [--resume | --force] \
        MODEL.WEIGHTS path/model_final.pth DATA.ROOT /imagenet/train DATA.VAL_ROOT /imagenet/val \
        DATA.PERCENT 1 [SOLVER.EPOCHS 60] [KEY VALUE ...]
    python tools/finetune.py ... DATA.SUBSET_FILE 1percent.txt SOLVER.EPOCHS 60

MODEL.WEIGHTS: any checkpoint format tools/convert.py reads. Keys and defaults: pretrain/config.py
(get_finetune_cfg); the protocol: pretrain/finetune.py. A non-empty OUTPUT_DIR is refused unless
--resume or --force."""

from pretrain.common.cli import parse_run_folder_args, run_entry_point, run_folder_parser
from pretrain.common.errors import CheckpointError, ConfigError
from pretrain.config import load_finetune_cfg
from pretrain.evaluation.backbone_loading import BackboneLoadError
from pretrain.finetune import run_finetune
from pretrain.models.backbone import UnknownStemError


def main(argv=None) -> int:
    args = parse_run_folder_args(run_folder_parser(__doc__), argv)
    try:
        run_finetune(
            load_finetune_cfg(args.config_file, args.opts), resume=args.resume, force=args.force
        )
    except BackboneLoadError as err:
        raise CheckpointError(str(err)) from None
    except UnknownStemError as err:
        raise ConfigError(str(err)) from None
    return 0


def entry_point() -> None:
    run_entry_point(main, "rerun with --resume to continue from the last checkpoint")


if __name__ == "__main__":
    entry_point()
