#!/usr/bin/env python
"""How the held-out I_NCE of a sweep's checkpoints depends on how it is measured: the estimator
before 2026-12-07 (N images evenly spaced in folder order, so each batch-norm batch of a class
folder held one or two classes, batch norm in train mode), the same images shuffled (train mode,
two orders), and the current default (a seeded random sample in random order, batch norm in eval
mode: a fixed critic), with a second sample to show the sampling spread.

    python bench/ince_estimators.py SWEEP_DIR --heldout DIR [--n 1024]

Prints one row per finished pretraining run of the sweep (tools/sweep.py's folders).
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import torch

from pretrain.config import load_cfg
from pretrain.data.packed import open_images
from pretrain.data.pipelines import ViewPipeline
from pretrain.evaluation.mutual_info import heldout_views, info_nce_estimate
from pretrain.models.registry import build_model


def folder_order_views(cfg, root: str, n: int):
    """The old selection: n images evenly spaced over the folder, in folder order."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATA.PIPELINE = "cpu"
    pipeline = ViewPipeline(cfg, open_images(root), "cpu")
    samples = len(pipeline.dataset)
    n = min(n, samples) // cfg.SOLVER.BATCH_SIZE * cfg.SOLVER.BATCH_SIZE
    views, _ = pipeline.collate([pipeline.dataset[(0, i * samples // n)] for i in range(n)])
    return views[0], views[1]


def estimates(point_dir: str, heldout: str, n: int) -> dict:
    cfg = load_cfg(os.path.join(point_dir, "config.yaml"))
    result = json.load(open(os.path.join(point_dir, "result.json")))

    def model():
        torch.manual_seed(cfg.SEED)
        built = build_model(cfg)
        if result.get("checkpoint"):
            built.load_state_dict(
                torch.load(result["checkpoint"], map_location="cpu", weights_only=False)["model"]
            )
        return built

    batch = cfg.SOLVER.BATCH_SIZE
    rows = {"label": result["label"], "seed": result.get("seed")}
    q, k = folder_order_views(cfg, heldout, n)
    rows["folder order, train BN"] = info_nce_estimate(model(), q, k, batch, cfg.SEED, "train")
    for order_seed in (0, 1):
        q, k = heldout_views(cfg, heldout, n, order_seed)
        rows[f"shuffled {order_seed}, train BN"] = info_nce_estimate(
            model(), q, k, batch, cfg.SEED, "train"
        )
        rows[f"shuffled {order_seed}, eval BN"] = info_nce_estimate(
            model(), q, k, batch, cfg.SEED, "eval"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sweep_dir")
    parser.add_argument("--heldout", required=True)
    parser.add_argument("--n", type=int, default=1024)
    args = parser.parse_args()
    points = sorted(
        os.path.dirname(p)
        for p in glob.glob(os.path.join(args.sweep_dir, "**", "result.json"), recursive=True)
    )
    header = None
    for point in points:
        if not os.path.isfile(os.path.join(point, "config.yaml")):
            continue  # random init: nothing was trained there (its I_NCE is near 0 either way)
        rows = estimates(point, args.heldout, args.n)
        columns = [c for c in rows if c not in ("label", "seed")]
        if header is None:
            header = "| setting | seed | " + " | ".join(columns) + " |"
            print(header + "\n" + "|---" * (len(columns) + 2) + "|")
        print(
            f"| {rows['label']} | {rows['seed']} | "
            + " | ".join(f"{rows[c]['i_nce']:.3f}" for c in columns)
            + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
