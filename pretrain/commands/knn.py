"""Weighted kNN accuracy of a backbone's features on labelled image folders.

    python tools/knn.py --checkpoint output/pretrain/.../model_final.pth \
        --train-root cifar10/train --test-root cifar10/test [--crop 64] [--train-limit 10000] \
        [--json result.json]

Without --checkpoint it measures a randomly initialised backbone (the baseline). The flags are the
keys of the knn stage's config (pretrain/evaluation/knn_stage.py), which slurm/submit.py knn \
takes."""

import argparse
import json

from pretrain.common.cli import run_entry_point
from pretrain.engine.checkpoint import atomic_write_text
from pretrain.evaluation.knn_stage import load_knn_cfg, run_stage
from pretrain.models.backbone import STEMS

# flag -> config key of the knn stage
FLAG_KEYS = {
    "arch": "MODEL.ARCH",
    "width": "MODEL.WIDTH",
    "stem": "MODEL.STEM",
    "checkpoint": "MODEL.WEIGHTS",
    "encoder": "MODEL.ENCODER",
    "train_root": "DATA.ROOT",
    "test_root": "DATA.VAL_ROOT",
    "crop": "DATA.CROP_SIZE",
    "train_limit": "DATA.LIMIT",
    "test_limit": "DATA.VAL_LIMIT",
    "k": "KNN.K",
    "temperature": "KNN.TEMPERATURE",
    "crop_fraction": "DATA.CROP_FRACTION",
    "seed": "SEED",
    "workers": "DATA.NUM_WORKERS",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--arch",
        default="",
        help="default: the checkpoint's own (a pretraining checkpoint records "
        "it, with its width); resnet50 for a random backbone",
    )
    parser.add_argument("--width", type=int, default=1)
    parser.add_argument(
        "--stem",
        default="",
        choices=("",) + tuple(STEMS),
        help="the backbone's stem (default: the checkpoint's own; imagenet for a random backbone)",
    )
    parser.add_argument("--checkpoint", default="", help="any format tools/convert.py reads")
    parser.add_argument("--encoder", default="query", choices=("query", "key"))
    parser.add_argument("--train-root", required=True)
    parser.add_argument("--test-root", required=True)
    parser.add_argument(
        "--crop",
        type=int,
        default=0,
        help="evaluation crop; default: the checkpoint's pretraining crop "
        "(recorded in a pretraining checkpoint), else 224",
    )
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--test-limit", type=int, default=0)
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument(
        "--temperature", type=float, default=0.07, help="each neighbour votes exp(cosine / T)"
    )
    parser.add_argument(
        "--crop-fraction",
        type=float,
        default=0.875,
        help="resize to crop / fraction, centre-crop; 1.0: the whole image; "
        "an image no larger than the crop is shown whole either way",
    )
    parser.add_argument("--seed", type=int, default=0, help="initialisation of a random backbone")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default="", metavar="PATH", help="also write the result there")
    return parser.parse_args(argv)


def flags_as_opts(args: argparse.Namespace) -> list[str]:
    """The flags as the stage's KEY VALUE overrides (strings, quoted where YAML would retype)."""
    opts = []
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag)
        opts += [key, repr(value) if isinstance(value, str) else str(value)]
    return opts


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run_stage(load_knn_cfg("", flags_as_opts(args)))
    if args.json:
        atomic_write_text(json.dumps(result, indent=1) + "\n", args.json)
    return 0


def entry_point() -> None:
    run_entry_point(main)


if __name__ == "__main__":
    entry_point()
