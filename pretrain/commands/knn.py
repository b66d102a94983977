"""Weighted kNN accuracy of a backbone's features on labelled image folders.

    python tools/knn.py --arch resnet18 --checkpoint output/pretrain/.../model_final.pth \
        --train-root cifar10/train --test-root cifar10/test --crop 64 [--train-limit 10000]

Without --checkpoint it measures a randomly initialised backbone (the baseline). The flags are the
keys of the knn stage's config (pretrain/evaluation/knn_stage.py), which slurm/submit.py knn takes."""
import argparse

from pretrain.common.cli import run_entry_point
from pretrain.evaluation.knn_stage import load_knn_cfg, run_stage
from pretrain.models.backbone import STEMS

# flag -> config key of the knn stage
FLAG_KEYS = {"arch": "MODEL.ARCH", "width": "MODEL.WIDTH", "stem": "MODEL.STEM",
             "checkpoint": "MODEL.CHECKPOINT", "encoder": "MODEL.ENCODER",
             "train_root": "DATA.TRAIN_ROOT", "test_root": "DATA.TEST_ROOT", "crop": "DATA.CROP_SIZE",
             "train_limit": "DATA.TRAIN_LIMIT", "test_limit": "DATA.TEST_LIMIT", "k": "KNN.K",
             "seed": "SEED", "workers": "DATA.NUM_WORKERS"}


def parse_args(argv=None) -> argparse.Namespace:
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
    return parser.parse_args(argv)


def flags_as_opts(args: argparse.Namespace) -> list[str]:
    """The flags as the stage's KEY VALUE overrides (strings, quoted where YAML would retype)."""
    opts = []
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag)
        opts += [key, repr(value) if isinstance(value, str) else str(value)]
    return opts


def main(argv=None) -> int:
    run_stage(load_knn_cfg("", flags_as_opts(parse_args(argv))))
    return 0


def entry_point() -> None:
    run_entry_point(main)


if __name__ == "__main__":
    entry_point()
