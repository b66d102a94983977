#!/usr/bin/env python
"""Export a pretrained backbone as Detectron2 weights.

    python tools/convert.py INPUT OUTPUT.pkl [--format auto|pretrain|moco|pycontrast|torchvision|detectron2]
                            [--encoder query|key] [--force]

Keeps the backbone only (stem, res2-res5, BN statistics) and prints what it kept and dropped.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detection.convert import FORMATS, ConversionError, convert  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS)
    parser.add_argument("--encoder", default="query", choices=("query", "key"),
                        help="which encoder of a contrastive checkpoint (key = momentum encoder)")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT")
    args = parser.parse_args(argv)
    try:
        summary = convert(args.input, args.output, args.format, args.encoder, args.force)
    except ConversionError as err:
        print(f"error: {args.input}: {err}", file=sys.stderr)
        return 1
    print(f"read {args.input} as {summary['format']} ({args.encoder} encoder)")
    print(f"kept {len(summary['kept'])} backbone tensors; dropped {len(summary['dropped'])} keys"
          + (f" ({', '.join(summary['dropped'][:6])}{', ...' if len(summary['dropped']) > 6 else ''})"
             if summary["dropped"] else ""))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
