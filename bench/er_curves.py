#!/usr/bin/env python
"""Entropy and reconstruction over training on CIFAR-10 (the seeds' issue, ER part): SimCLR,
BYOL, SwAV and DINO, and the ER variants BYOL-ER, SwAV-ER and DINO-ER, each from its shipped
recipe at one short budget, with the ER monitor every run logs (metrics.jsonl: er/entropy,
er/reconstruction; pretrain/entropy_reconstruction.py). The paper's observation to hold this
against (Rodríguez-Gálvez et al. 2023, Sec. 4-5): distillation methods (BYOL, DINO) keep the
entropy about flat while they improve the reconstruction; clustering (SwAV) raises it.

    python bench/er_curves.py --cifar DIR --output DIR [--steps 200] [--seeds 0 1 2]
        [--methods byol swav]

Budget (the methods comparison's, bench/methods_cifar.py): ResNet-18 with the tinyimagenet stem
at 32 px, batches of 64, warm-up 10% of the run, one data worker, bf16 where the CPU computes it
natively (SOLVER.CPU_AMP); lr per the method's recipe, scaled linearly (SimCLR by its
square-root rule); EMA momenta kept in fractions of the run
(MODEL.MOMENTUM_REFERENCE_ITERS). For a CPU: 2 small crops of 16 px instead of the recipes'
6 / 8 of 96 at 224, DINO with 4,096 outputs instead of 65,536, and the epochs-counted freezes
(SwAV's prototypes, DINO's last layer) and DINO's warm-ups off, since one ImageNet epoch is
1/100 to 1/800 of the papers' runs and 0 steps of this one. Each method runs once per seed in
--output/seed<S>/<method> (skipped where its model_final.pth exists); er_curves.png plots the
seeds' mean change since the first logged window, er.md tables each method's entropy,
reconstruction and I_ER (first logged window, mean of the last three) as mean +- SD over seeds,
and each ER variant against its parent by a paired t over the seeds
(pretrain/evaluation/paired_tests.py)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
PARENTS = {"byol-er": "byol", "swav-er": "swav", "dino-er": "dino"}
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
        "SOLVER.CPU_AMP",
        "True",  # pinned: bf16 where the CPU computes it natively, as bench/methods_cifar.py
        "LOG_PERIOD",
        "10",
        "SEED",
        str(seed),
    ]


def run(method: str, seed: int, args) -> str:
    out = os.path.join(args.output, f"seed{seed}", method)
    if not os.path.exists(os.path.join(out, "model_final.pth")):
        config, extra = METHODS[method]
        subprocess.run(
            [
                sys.executable,
                os.path.join(REPO, "tools", "pretrain.py"),
                "--config-file",
                os.path.join(REPO, "configs", "pretrain", config),
                *protocol(args.cifar, args.steps, seed),
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


KEYS = ("er/entropy", "er/reconstruction", "I_ER")


def ends(records: list[dict]) -> dict[str, tuple[float, float]]:
    """Per key: (the first logged window, the mean of the last three)."""
    return {k: (records[0][k], statistics.fmean(r[k] for r in records[-3:])) for k in KEYS}


def plot(found: dict[str, list[list[dict]]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for column, support in enumerate(("sphere", "discrete")):
        for row, key in enumerate(("er/entropy", "er/reconstruction")):
            ax = axes[row][column]
            for method, runs in found.items():
                if SUPPORT[method] != support:
                    continue
                # The change since the first logged window: the level depends on the embedding's
                # dimension (SimCLR's 128 against BYOL's 256 on the sphere), the change does not.
                steps = [r["iteration"] for r in runs[0]]
                mean = [
                    statistics.fmean(run[i][key] - run[0][key] for run in runs)
                    for i in range(len(steps))
                ]
                ax.plot(
                    steps,
                    mean,
                    label=f"{method} ({len(runs)} seeds)",
                    linestyle="--" if method.endswith("-er") else "-",
                )
            ax.set_xlabel("iteration")
            ax.set_ylabel(f"{key.split('/')[1]}: change since the first window (nats)")
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


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}"


def _t_cell(differences: list[float]) -> str:
    """A table cell: the paired t over the seeds' differences, its 95% interval and p."""
    from pretrain.evaluation.paired_tests import paired_t

    test = paired_t(differences)
    low, high = test["ci"]
    return f"{test['difference']:+.2f} (95% CI {low:+.2f} to {high:+.2f}, p {test['p']:.2g})"


def table(found: dict[str, list[list[dict]]], seeds: list[int]) -> str:
    """Each method's first window and end (last three windows), mean ± SD over seeds; then each
    ER variant minus its parent at the end, paired by seed."""
    lines = [
        f"Seeds {seeds}; values in nats per batch of 64; end = mean of the last three logged "
        "windows.",
        "",
        "| method | support | H first | H end | Rec first | Rec end | I_ER first | I_ER end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary = {m: [ends(run) for run in runs] for m, runs in found.items()}
    for method, per_seed in summary.items():
        cells = [_mean_sd([e[k][i] for e in per_seed]) for k in KEYS for i in (0, 1)]
        lines.append(f"| {method} | {SUPPORT[method]} | " + " | ".join(cells) + " |")
    if len(seeds) > 1:
        lines += [
            "",
            "| method: end - first window | H | Rec |",
            "|---|---|---|",
        ]
        for method, per_seed in summary.items():
            cells = [_t_cell([e[key][1] - e[key][0] for e in per_seed]) for key in KEYS[:2]]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    pairs = [(v, p) for v, p in PARENTS.items() if v in summary and p in summary]
    if pairs and len(seeds) > 1:
        lines += [
            "",
            "| variant - parent, at the end | H | Rec | I_ER |",
            "|---|---|---|---|",
        ]
        for variant, parent in pairs:
            cells = [
                _t_cell([a[key][1] - b[key][1] for a, b in zip(summary[variant], summary[parent])])
                for key in KEYS
            ]
            lines.append(f"| {variant} - {parent} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cifar", required=True, help="CIFAR-10 class folders (train/, test/)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    found = {
        method: [curves(run(method, seed, args)) for seed in args.seeds] for method in args.methods
    }
    plot(found, os.path.join(args.output, "er_curves.png"))
    text = table(found, args.seeds)
    with open(os.path.join(args.output, "er.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
