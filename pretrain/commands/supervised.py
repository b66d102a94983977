"""Supervised pretraining baseline: a ResNet trained with labels on class folders (ImageNet
layout), exported like any other backbone (tools/convert.py reads its model_final.pth).

    python tools/supervised.py [--config-file CFG] [--resume | --force] MODEL.ARCH resnet18 \
        DATA.ROOT /data/train DATA.VAL_ROOT /data/val DATA.CROP_SIZE 64 SOLVER.MAX_ITER 1500 \
        [KEY VALUE ...]

Keys and defaults: pretrain/config.py (get_supervised_cfg); the schedule: pretrain/supervised.py.
A non-empty OUTPUT_DIR is refused unless --resume or --force."""

from pretrain.common.cli import parse_run_folder_args, run_entry_point, run_folder_parser
from pretrain.config import load_supervised_cfg
from pretrain.supervised import train_supervised


def main(argv=None) -> int:
    args = parse_run_folder_args(run_folder_parser(__doc__), argv)
    train_supervised(
        load_supervised_cfg(args.config_file, args.opts), resume=args.resume, force=args.force
    )
    return 0


def entry_point() -> None:
    run_entry_point(main, "rerun with --resume to continue from the last checkpoint")


if __name__ == "__main__":
    entry_point()
