#!/usr/bin/env python
"""Is the GPU pipeline's speed bought with a different recipe? The same short pretraining on
CIFAR-10 (../shared/data) with DATA.PIPELINE cpu and gpu, for a few seeds each, then kNN top-1 of
each backbone on the test images: the two columns should agree within their seed-to-seed spread.

    python bench/pipeline_knn.py [--iters 400] [--seeds 0,1] [--output .cache/pipeline_knn]
        [KEY VALUE ...]   (overrides for configs/pretrain/demo_R18_infomin.yaml)

Runs tools/pretrain.py as a user would; on a GPU the gpu pipeline runs there, without one both run
on the CPU (slow, but the recipe comparison holds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from pretrain.data.archive import unpack_once
from pretrain.engine.progress import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CIFAR = os.path.join(os.path.dirname(REPO), "shared", "data", "cifar10-images.tar.gz")


def final_knn(output_dir: str) -> float:
    return [r["knn_acc"] for r in read_metrics(output_dir) if "knn_acc" in r][-1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default="configs/pretrain/demo_R18_infomin.yaml")
    parser.add_argument("--iters", type=int, default=400)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--pipelines", default="cpu,gpu")
    parser.add_argument("--knn-train", type=int, default=5000, help="kNN memory bank images")
    parser.add_argument("--knn-test", type=int, default=1000, help="kNN query images")
    parser.add_argument("--output", default=os.path.join(REPO, ".cache", "pipeline_knn"))
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cifar = unpack_once(CIFAR, os.path.join(REPO, ".cache", "cifar10"))
    train, test = os.path.join(cifar, "train"), os.path.join(cifar, "test")

    results: dict[str, list[float]] = {}
    for pipeline in args.pipelines.split(","):
        for seed in args.seeds.split(","):
            out = os.path.join(args.output, f"{pipeline}_seed{seed}")
            subprocess.run(
                [
                    sys.executable,
                    "tools/pretrain.py",
                    "--config-file",
                    args.config_file,
                    "--resume",
                    "DATA.ROOT",
                    train,
                    "DATA.PIPELINE",
                    pipeline,
                    "SEED",
                    seed,
                    "SOLVER.MAX_ITER",
                    str(args.iters),
                    "EVAL.KNN_PERIOD",
                    str(args.iters),
                    "EVAL.KNN_TRAIN_ROOT",
                    train,
                    "EVAL.KNN_TEST_ROOT",
                    test,
                    "EVAL.KNN_TRAIN_LIMIT",
                    str(args.knn_train),
                    "EVAL.KNN_TEST_LIMIT",
                    str(args.knn_test),
                    "OUTPUT_DIR",
                    out,
                    *args.opts,
                ],
                cwd=REPO,
                check=True,
            )
            results.setdefault(pipeline, []).append(final_knn(out))

    print(
        f"\nkNN top-1 (%) after {args.iters} iterations of {args.config_file} on CIFAR-10 "
        f"({args.knn_train} train / {args.knn_test} test images), seeds {args.seeds}"
    )
    print(f"{'pipeline':<10}{'runs':>24}{'mean':>8}{'spread':>8}")
    for pipeline, accs in results.items():
        runs = ", ".join(f"{a:.1f}" for a in accs)
        spread = max(accs) - min(accs)
        print(f"{pipeline:<10}{runs:>24}{statistics.mean(accs):>8.1f}{spread:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
