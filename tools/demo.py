#!/usr/bin/env python
"""The whole pipeline on a small real default, as `make demo` runs it:

  1. contrastive pretraining of a ResNet-18 on CIFAR-10 JPEGs (tools/pretrain.py),
  2. export of its backbone to Detectron2 (tools/convert.py),
  3. Mask R-CNN R18-FPN fine-tuned on fruits_nuts from those weights and, with the same schedule,
     from random initialisation (detection/train_net.py), both evaluated on a held-out split,
  4. an AP table, printed and written to OUTPUT/report.md.

Every stage is the user-facing command, run as a subprocess; its output streams through.

    python tools/demo.py [--pretrain-data DIR] [--detection-config CFG] [--output DIR] ...
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
sys.path.insert(0, REPO)


def run(*args: str) -> None:
    print(f"\n$ {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, *args], cwd=REPO, check=True)


def default_pretrain_data() -> str:
    from pretrain.data.archive import unpack_once

    archive = os.path.join(SHARED_DATA, "cifar10-images.tar.gz")
    if not os.path.isfile(archive):
        raise SystemExit(f"error: the default pretraining images {archive} are missing; "
                         "pass --pretrain-data DIR")
    return os.path.join(unpack_once(archive, os.path.join(REPO, ".cache", "cifar10")), "train")


def ap_table(runs: dict[str, str]) -> str:
    """Markdown table of every task's AP / AP50 / AP75 for each run's metrics_eval.json."""
    rows = ["| init | dataset | task | AP | AP50 | AP75 |", "|---|---|---|---|---|---|"]
    for label, folder in runs.items():
        with open(os.path.join(folder, "metrics_eval.json")) as f:
            results = json.load(f)
        for dataset, tasks in results.items():
            for task, m in tasks.items():
                cells = [f"{m[k]:.1f}" if m.get(k) is not None else "n/a"
                         for k in ("AP", "AP50", "AP75")]
                rows.append(f"| {label} | {dataset} | {task} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-data", default="",
                        help="images to pretrain on (default: CIFAR-10 from ../shared/data)")
    parser.add_argument("--pretrain-config", default="configs/pretrain/demo_R18_mocov2.yaml")
    parser.add_argument("--pretrain-iters", type=int, default=200)
    parser.add_argument("--detection-config",
                        default="configs/detection/small/fruits_nuts_R_18_FPN.yaml")
    parser.add_argument("--finetune-iters", type=int, default=80)
    parser.add_argument("--output", default="demo_output")
    args = parser.parse_args(argv)

    start = time.time()
    output = os.path.abspath(args.output)
    pretrain_dir = os.path.join(output, "pretrain")
    data = args.pretrain_data or default_pretrain_data()
    run("tools/pretrain.py", "--config-file", args.pretrain_config, "--resume",
        "DATA.ROOT", data, "SOLVER.MAX_ITER", str(args.pretrain_iters), "OUTPUT_DIR", pretrain_dir)
    weights = os.path.join(output, "backbone_d2.pkl")
    run("tools/convert.py", os.path.join(pretrain_dir, "model_final.pth"), weights, "--force")

    runs = {"pretrained (ours)": (weights, os.path.join(output, "finetune_pretrained")),
            "random init": ("", os.path.join(output, "finetune_random"))}
    for init_weights, folder in runs.values():
        run("detection/train_net.py", "--config-file", args.detection_config,
            "MODEL.WEIGHTS", init_weights, "SOLVER.MAX_ITER", str(args.finetune_iters),
            "SOLVER.STEPS", f"({int(args.finetune_iters * 0.8)},)", "OUTPUT_DIR", folder)

    table = ap_table({label: folder for label, (_, folder) in runs.items()})
    report = os.path.join(output, "report.md")
    with open(report, "w") as f:
        f.write("# Demo: contrastive pretraining -> Detectron2 fine-tuning\n\n"
                f"Pretraining: `{args.pretrain_config}` on `{data}`, {args.pretrain_iters} "
                f"iterations. Fine-tuning: `{args.detection_config}`, {args.finetune_iters} "
                "iterations from each initialisation.\n\n" + table + "\n")
    print(f"\n{table}\n\nreport: {report} ({(time.time() - start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
