#!/usr/bin/env python
"""A fair small-budget comparison of methods on CIFAR-10 (the measurements issue, part 6): each
method's shipped recipe at one short, equal budget, with
  - the learning rate by the method's own small-batch rule (SimCLR: 0.075 sqrt(batch), App. B.1;
    the others: linear per 256, as their papers scale);
  - every EMA momentum kept the same in fractions of the run (MODEL.MOMENTUM_REFERENCE_ITERS = the
    paper's run length in iterations);
  - MoCo v2 with the batch's keys as negatives (a 65,536 queue would be 80% random keys after
    200 steps of 64);
and random init over the same seeds, drawn as each recipe draws its network, as the baseline.
Each method is a tools/sweep.py run without a grid (pretrain/sweep.py), so every run keeps its
per-image kNN predictions; the table gives kNN mean ± SD over seeds and the paired bootstrap
over seeds and test images against random init.

    python bench/methods_cifar.py --cifar DIR --output DIR [--seeds 0 1] [--methods simclr byol]
"""

from __future__ import annotations

import argparse
import json
import os

from er_curves import METHODS as ER_METHODS  # bench/, beside this script
from pretrain.sweep import Sweep, read_result, run_point
from pretrain.sweep_report import paired_runs_test

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET = 1_281_167  # training images: the papers' run lengths in iterations below
METHODS = {
    "simclr": ("simclr_R50_100ep.yaml", ["SOLVER.LR_SCALING", "sqrt", "SOLVER.BASE_LR", "1.2"]),
    "mocov2": (
        "mocov2_R50_200ep.yaml",
        [
            "MODEL.QUEUE_SIZE",
            "0",
            "MODEL.BATCH_NEGATIVES",
            "True",
            "MODEL.MOMENTUM_REFERENCE_ITERS",
            str(200 * IMAGENET // 256),
        ],
    ),
    "mocov3": (
        "mocov3_R50_100ep.yaml",
        ["MODEL.MOMENTUM_REFERENCE_ITERS", str(100 * IMAGENET // 4096)],
    ),
    "byol": (
        "byol_R50_1000ep.yaml",
        ["MODEL.MOMENTUM_REFERENCE_ITERS", str(1000 * IMAGENET // 4096)],
    ),
    "simsiam": ("simsiam_R50_100ep.yaml", []),
    # The release's Adam at 2e-4, not scaled with the batch; its lr steps (epochs 30, 45) lie
    # beyond this budget. n_rkhs 256 instead of 1536: the 1x1 embeddings of every location at
    # 1536 channels ran at 5 img/s on a 2-core CPU.
    "amdim": ("amdim_R50_IN128_50ep.yaml", ["MODEL.FEAT_DIM", "256"]),
}
# SwAV, DINO and the ER variants with bench/er_curves.py's CPU adaptations (two 16 px small
# crops, DINO's 4,096 outputs, the epoch-counted freezes off; the EMA momenta as above).
METHODS.update({m: ER_METHODS[m] for m in ("swav", "dino", "byol-er", "swav-er", "dino-er")})


def protocol(cifar: str) -> list[str]:
    """The views sweeps' budget: ResNet-18, tinyimagenet stem, 32 px, 200 steps of 64, warm-up
    10% of the run, kNN from 5,000 training images onto 2,000 test images (whole images)."""
    return [
        "DATA.ROOT",
        f"{cifar}/train",
        "DATA.CROP_SIZE",
        "32",
        "MODEL.STEM",
        "tinyimagenet",
        "MODEL.ARCH",
        "resnet18",
        "SOLVER.BATCH_SIZE",
        "64",
        "SOLVER.MAX_ITER",
        "200",
        "SOLVER.WARMUP_EPOCHS",
        "0.025",
        "SOLVER.CHECKPOINT_PERIOD",
        "50",
        "SOLVER.CPU_AMP",
        "True",
        "DATA.NUM_WORKERS",
        "1",
        "LOG_PERIOD",
        "20",
        "EVAL.KNN_TRAIN_ROOT",
        f"{cifar}/train",
        "EVAL.KNN_TEST_ROOT",
        f"{cifar}/test",
        "EVAL.KNN_TRAIN_LIMIT",
        "5000",
        "EVAL.KNN_TEST_LIMIT",
        "2000",
        "EVAL.CROP_FRACTION",
        "1.0",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cifar", required=True, help="CIFAR-10 class folders (train/, test/)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    runs = {}
    for method in args.methods:
        config, extra = METHODS[method]
        sweep = Sweep(
            os.path.join(REPO, "configs", "pretrain", config),
            protocol(args.cifar) + extra,
            [],
            os.path.join(args.output, method),
            f"{args.cifar}/test",
            512,
            seeds=args.seeds,
        )
        sweep.check()
        for point in sweep.points():
            # Each method against random init drawn as its own recipe draws (MODEL.INIT,
            # ZERO_INIT_RESIDUAL: SimCLR's and BYOL's releases draw differently from the rest).
            label = f"random init ({method})" if point.random_init else method
            run_point(sweep, point)
            runs.setdefault(label, []).append(read_result(sweep, point))
    lines = [
        "| method | kNN top-1 (%) per seed | mean | vs random init: diff [95% CI], p |",
        "|---|---|---|---|",
    ]
    for label, results in runs.items():
        accuracies = [r["accuracy"] for r in results]
        baseline = runs.get(f"random init ({label})")
        test = None if baseline is None else paired_runs_test(results, baseline)
        cell = (
            "-"
            if test is None
            else (
                f"{test['difference']:+.1f} [{test['ci'][0]:+.1f}, "
                f"{test['ci'][1]:+.1f}], p {test['p']:.3g}"
            )
        )
        lines.append(
            f"| {label} | {', '.join(f'{a:.1f}' for a in accuracies)} "
            f"| {sum(accuracies) / len(accuracies):.1f} | {cell} |"
        )
    table = "\n".join(lines) + "\n"
    with open(os.path.join(args.output, "methods.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.output, "methods.json"), "w") as f:
        json.dump(
            {
                label: [
                    {k: v for k, v in r.items() if k not in ("predictions", "labels")}
                    for r in results
                ]
                for label, results in runs.items()
            },
            f,
            indent=1,
        )
    print(table)


if __name__ == "__main__":
    main()
