#!/usr/bin/env python
"""Weighted kNN accuracy of a backbone's features on labelled image folders.

    python tools/knn.py --arch resnet18 --checkpoint output/pretrain/.../model_final.pth \
        --train-root cifar10/train --test-root cifar10/test --crop 64 [--train-limit 10000] \
        [--json result.json]

Without --checkpoint it measures a randomly initialised backbone (the baseline)."""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pretrain.evaluation.backbone_loading import BackboneLoadError  # noqa: E402
from pretrain.evaluation.knn import knn_probe  # noqa: E402
from pretrain.evaluation.readout_checks import warn_random_backbone  # noqa: E402
from pretrain.models.backbone import STEMS, UnknownStemError  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--width", type=int, default=1)
    parser.add_argument("--stem", default="", choices=("",) + tuple(STEMS),
                        help="the backbone's stem (default: the checkpoint's own; imagenet for a "
                             "random backbone)")
    parser.add_argument("--checkpoint", default="", help="any format tools/convert.py reads")
    parser.add_argument("--encoder", default="query", choices=("query", "key"))
    parser.add_argument("--train-root", required=True)
    parser.add_argument("--test-root", required=True)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--test-limit", type=int, default=0)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="initialisation of a random backbone")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default="", metavar="PATH", help="also write the result there")
    args = parser.parse_args(argv)
    warn_random_backbone(args.checkpoint, "--checkpoint")
    try:
        result = knn_probe(args.arch, args.train_root, args.test_root, args.checkpoint, args.crop,
                           args.encoder, args.width, args.stem, args.train_limit,
                           args.test_limit, args.k, args.seed, args.workers)
    except (BackboneLoadError, UnknownStemError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"kNN (k={args.k}) top-1: {result['top1']:.2f}%  [{args.checkpoint or 'random init'}, "
          f"{result['stem']} stem]")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
