"""Supervised pretraining baseline: a ResNet trained with labels on class folders (ImageNet
layout), exported like any other backbone (tools/convert.py reads its model_final.pth).

    python tools/supervised.py [--config-file CFG] [--resume] ARCH resnet18 \
        TRAIN_ROOT /data/train VAL_ROOT /data/val CROP_SIZE 64 MAX_ITER 1500 [KEY VALUE ...]

Defaults and the schedule: pretrain/supervised.py."""
import argparse

from pretrain.common.cli import run_entry_point
from pretrain.supervised import load_supervised_cfg, train_supervised


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last_checkpoint if there is one")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    train_supervised(load_supervised_cfg(args.config_file, args.opts), resume=args.resume)
    return 0


def entry_point() -> None:
    run_entry_point(main, "rerun with --resume to continue from the last checkpoint")


if __name__ == "__main__":
    entry_point()
