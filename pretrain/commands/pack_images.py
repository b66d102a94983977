"""Pack an image folder (ImageNet layout, a flat folder or a .txt list) into one memory-mapped file
that pretraining reads with DATA.ROOT OUTPUT (either DATA.PIPELINE). The files are stored unchanged
(no re-encoding), so views from a pack equal views from the folder.

    python tools/pack_images.py /data/imagenet/train /fast/imagenet_train.pack
"""

from __future__ import annotations

import argparse

from pretrain.common.cli import run_entry_point
from pretrain.data.packed import build_pack


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", help="image folder or .txt list of image paths")
    parser.add_argument("output", help="the pack folder to write (replaced when complete)")
    args = parser.parse_args(argv)
    build_pack(args.root, args.output)
    return 0


def entry_point() -> None:
    run_entry_point(main)


if __name__ == "__main__":
    entry_point()
