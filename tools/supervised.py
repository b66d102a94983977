#!/usr/bin/env python
"""Supervised pretraining baseline: a ResNet trained with labels on class folders (ImageNet
layout), exported like any other backbone (tools/convert.py reads its model_final.pth).

    python tools/supervised.py [--config-file CFG] [--resume] ARCH resnet18 \
        TRAIN_ROOT /data/train VAL_ROOT /data/val CROP_SIZE 64 MAX_ITER 1500 [KEY VALUE ...]

Defaults and the schedule: pretrain/supervised.py."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pretrain.common.cli import apply_trailing_flags  # noqa: E402
from pretrain.supervised import load_supervised_cfg, train_supervised  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last_checkpoint if there is one")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    apply_trailing_flags(args, ("--resume",))  # also after the KEY VALUE pairs
    train_supervised(load_supervised_cfg(args.config_file, args.opts), resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
