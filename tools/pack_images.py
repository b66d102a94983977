#!/usr/bin/env python
"""Pack an image folder (ImageNet layout, a flat folder or a .txt list) into one memory-mapped file
that pretraining reads with DATA.ROOT OUTPUT (either DATA.PIPELINE). The files are stored unchanged
(no re-encoding), so views from a pack equal views from the folder.

    python tools/pack_images.py /data/imagenet/train /fast/imagenet_train.pack
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pretrain.data.packed import build_pack  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="image folder or .txt list of image paths")
    parser.add_argument("output", help="the pack folder to write (replaced when complete)")
    args = parser.parse_args(argv)
    build_pack(args.root, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
