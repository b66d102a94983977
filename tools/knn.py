#!/usr/bin/env python
"""Weighted kNN accuracy of a backbone's features on labelled image folders.

    python tools/knn.py --arch resnet18 --checkpoint output/pretrain/.../model_final.pth \
        --train-root cifar10/train --test-root cifar10/test --crop 64 [--train-limit 10000]

Without --checkpoint it measures a randomly initialised backbone (the baseline)."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from pretrain.evaluation.backbone_loading import BackboneLoadError, load_backbone  # noqa: E402
from pretrain.evaluation.knn import knn_accuracy  # noqa: E402
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
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    warn_random_backbone(args.checkpoint, "--checkpoint")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        backbone, _, stem = load_backbone(args.arch, args.checkpoint, args.encoder, args.width,
                                    args.stem)
    except (BackboneLoadError, UnknownStemError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    acc = knn_accuracy(backbone.to(device), args.train_root, args.test_root, args.crop, device,
                       args.train_limit, args.test_limit, args.k, args.workers)
    print(f"kNN (k={args.k}) top-1: {acc:.2f}%  [{args.checkpoint or 'random init'}, "
          f"{stem} stem]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
