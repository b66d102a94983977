"""Linear readout of a pretrained backbone on labelled image folders (ImageNet layout).

    python tools/lincls.py [--config-file CFG] [--resume | --force] \
        MODEL.WEIGHTS path/model_final.pth DATA.ROOT /imagenet/train \
        DATA.VAL_ROOT /imagenet/val [KEY VALUE ...]

Defaults are the reference recipe (pretrain/evaluation/linear.py; keys: pretrain/config.py,
get_lincls_cfg). A non-empty OUTPUT_DIR is refused unless --resume or --force."""

from pretrain.common.cli import parse_run_folder_args, run_entry_point, run_folder_parser
from pretrain.common.errors import CheckpointError, ConfigError
from pretrain.config import load_lincls_cfg
from pretrain.evaluation.backbone_loading import BackboneLoadError
from pretrain.evaluation.linear import run_linear_readout
from pretrain.models.backbone import UnknownStemError


def main(argv=None) -> int:
    args = parse_run_folder_args(run_folder_parser(__doc__), argv)
    try:
        acc = run_linear_readout(
            load_lincls_cfg(args.config_file, args.opts), resume=args.resume, force=args.force
        )
    except BackboneLoadError as err:
        raise CheckpointError(str(err)) from None
    except UnknownStemError as err:
        raise ConfigError(str(err)) from None
    if acc is not None:  # None: a scheduler's signal stopped it (checkpointed)
        print(f"linear readout top-1: {acc:.2f}%")
    return 0


def entry_point() -> None:
    run_entry_point(main, "rerun with --resume to continue from the last checkpoint")


if __name__ == "__main__":
    entry_point()
