#!/usr/bin/env python
"""Entropy and reconstruction over training on CIFAR-10 (the seeds' issue, ER part): SimCLR,
BYOL, SwAV and DINO, and the ER variants BYOL-ER, SwAV-ER and DINO-ER, each from its shipped
recipe at one short budget, with the ER monitor every run logs (metrics.jsonl: er/entropy,
er/reconstruction; pretrain/entropy_reconstruction.py). The paper's observation to hold this
against (Rodríguez-Gálvez et al. 2023, Sec. 4-5): distillation methods (BYOL, DINO) keep the
entropy about flat while they improve the reconstruction; clustering (SwAV) raises it.

    python bench/er_curves.py --cifar DIR --output DIR [--steps 200] [--methods byol swav]

Budget (the methods comparison's, bench/methods_cifar.py): ResNet-18 with the tinyimagenet stem
at 32 px, batches of 64, warm-up 10% of the run, one data worker; lr per the method's recipe,
scaled linearly (SimCLR by its square-root rule); EMA momenta kept in fractions of the run
(MODEL.MOMENTUM_REFERENCE_ITERS). For a CPU: 2 small crops of 16 px instead of the recipes'
6 / 8 of 96 at 224, DINO with 4,096 outputs instead of 65,536, and the epochs-counted freezes
(SwAV's prototypes, DINO's last layer) and DINO's warm-ups off, since one ImageNet epoch is
1/100 to 1/800 of the papers' runs and 0 steps of this one. Writes er_curves.png and er.md to
--output; each run is skipped where its model_final.pth exists."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGENET = 1_281_167
SMALL_CROPS = ["DATA.MULTI_CROP.NUM_SMALL", "2", "DATA.MULTI_CROP.SMALL_SIZE", "16"]
METHODS = {
    "simclr": ("simclr_R50_100ep.yaml", ["SOLVER.LR_SCALING", "sqrt", "SOLVER.BASE_LR", "1.2"]),
    "byol": (
        "byol_R50_1000ep.yaml",
        ["MODEL.MOMENTUM_REFERENCE_ITERS", str(1000 * IMAGENET // 4096)],
    ),
    "byol-er": (
        "byol_er_R50_1000ep.yaml",
        ["MODEL.MOMENTUM_REFERENCE_ITERS", str(1000 * IMAGENET // 4096)],
    ),
    "swav": ("swav_R50_800ep.yaml", [*SMALL_CROPS, "MODEL.SWAV.FREEZE_PROTOTYPES_EPOCHS", "0.0"]),
    "swav-er": (
        "swav_er_R50_800ep.yaml",
        [*SMALL_CROPS, "MODEL.SWAV.FREEZE_PROTOTYPES_EPOCHS", "0.0"],
    ),
    "dino": (
        "dino_R50_100ep.yaml",
        [
            *SMALL_CROPS,
            "MODEL.DINO.OUT_DIM",
            "4096",
            "MODEL.DINO.FREEZE_LAST_LAYER_EPOCHS",
            "0.0",
            "MODEL.MOMENTUM_REFERENCE_ITERS",
            str(100 * IMAGENET // 512),
        ],
    ),
    "dino-er": (
        "dino_er_R50_100ep.yaml",
        [
            *SMALL_CROPS,
            "MODEL.DINO.OUT_DIM",
            "4096",
            "MODEL.DINO.FREEZE_LAST_LAYER_EPOCHS",
            "0.0",
            "MODEL.MOMENTUM_REFERENCE_ITERS",
            str(100 * IMAGENET // 512),
        ],
    ),
}
SUPPORT = {
    "simclr": "sphere",
    "byol": "sphere",
    "byol-er": "sphere",
    "swav": "discrete",
    "swav-er": "discrete",
    "dino": "discrete",
    "dino-er": "discrete",
}


def protocol(cifar: str, steps: int, seed: int) -> list[str]:
    return [
        "DATA.ROOT",
        f"{cifar}/train",
        "DATA.CROP_SIZE",
        "32",
        "MODEL.STEM",
        "tinyimagenet",
        "MODEL.ARCH",
        "resnet18",
        "MODEL.SYNC_BN",
        "False",
        "SOLVER.BATCH_SIZE",
        "64",
        "SOLVER.MAX_ITER",
        str(steps),
        "SOLVER.WARMUP_EPOCHS",
        str(0.1 * steps * 64 / 50_000),
        "SOLVER.CHECKPOINT_PERIOD",
        str(steps),
        "DATA.NUM_WORKERS",
        "1",
        "LOG_PERIOD",
        "10",
        "SEED",
        str(seed),
    ]


def run(method: str, args) -> str:
    out = os.path.join(args.output, method)
    if not os.path.exists(os.path.join(out, "model_final.pth")):
        config, extra = METHODS[method]
        subprocess.run(
            [
                sys.executable,
                os.path.join(REPO, "tools", "pretrain.py"),
                "--config-file",
                os.path.join(REPO, "configs", "pretrain", config),
                *protocol(args.cifar, args.steps, args.seed),
                *extra,
                "OUTPUT_DIR",
                out,
            ],
            check=True,
        )
    return out


def curves(out: str) -> list[dict]:
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if "er/entropy" in r]


def plot(found: dict[str, list[dict]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for column, support in enumerate(("sphere", "discrete")):
        for row, key in enumerate(("er/entropy", "er/reconstruction")):
            ax = axes[row][column]
            for method, records in found.items():
                if SUPPORT[method] != support:
                    continue
                ax.plot(
                    [r["iteration"] for r in records],
                    [r[key] for r in records],
                    label=method,
                    linestyle="--" if method.endswith("-er") else "-",
                )
            ax.set_xlabel("iteration")
            ax.set_ylabel(f"{key.split('/')[1]} (nats, per batch of 64)")
            ax.set_title(
                f"{key.split('/')[1]}, {support} support"
                + (
                    " (vMF kernel, kappa 10)"
                    if support == "sphere"
                    else " (batch-mean distribution)"
                )
            )
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(found: dict[str, list[dict]]) -> str:
    """First and last logged window of each run: H, Rec, I_ER and their change."""
    lines = [
        "| method | support | H first -> last | Rec first -> last | I_ER first -> last |",
        "|---|---|---|---|---|",
    ]
    for method, records in found.items():
        first, last = records[0], records[-1]

        def cell(key):
            return f"{first[key]:.2f} -> {last[key]:.2f} ({last[key] - first[key]:+.2f})"

        lines.append(
            f"| {method} | {SUPPORT[method]} | {cell('er/entropy')} "
            f"| {cell('er/reconstruction')} | {cell('I_ER')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cifar", required=True, help="CIFAR-10 class folders (train/, test/)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    found = {method: curves(run(method, args)) for method in args.methods}
    plot(found, os.path.join(args.output, "er_curves.png"))
    text = table(found)
    with open(os.path.join(args.output, "er.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
