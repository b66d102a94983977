#!/usr/bin/env python
"""Has pretraining learned to tell images apart yet? Scores pretraining checkpoints against fresh
keys (pretrain/evaluation/fresh_keys.py), next to the queue accuracy the training log shows.

    python tools/fresh_keys.py output/pretrain/run/model_final.pth [more.pth ...] \
        --images DIR [--n 1024] [--with-init]

Each checkpoint is rebuilt from the config it stores, and the probe images get that config's
views (epoch 0 of its seed), scored in batches of its SOLVER.BATCH_SIZE."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from fvcore.common.config import CfgNode  # noqa: E402

from pretrain.config import get_cfg  # noqa: E402
from pretrain.engine.checkpoint import load_checkpoint  # noqa: E402
from pretrain.evaluation.fresh_keys import fresh_key_scores  # noqa: E402
from pretrain.evaluation.mutual_info import HeldoutError, heldout_views  # noqa: E402
from pretrain.formats import ConversionError, detect_format  # noqa: E402
from pretrain.models.moco import build_moco  # noqa: E402

COLUMNS = ("queue_acc", "fresh_acc", "queue_loss", "fresh_loss", "chance_loss", "query_cosine")


def checkpoint_cfg(path: str, state: dict):
    try:
        layout = detect_format(state)
    except ConversionError as err:
        layout = str(err)
    if layout != "pretrain":
        raise SystemExit(f"error: {path}: not a checkpoint of tools/pretrain.py ({layout})")
    cfg = get_cfg()
    cfg.merge_from_other_cfg(CfgNode.load_cfg(state["cfg"]))
    return cfg


def probe_views(cfg, images_root: str, n: int):
    """(query views, key views) of the first n images (whole training batches), made by the
    checkpoint's own pipeline on the CPU (pretrain/evaluation/mutual_info.py)."""
    try:
        return heldout_views(cfg, images_root, n)
    except HeldoutError as err:
        raise SystemExit(f"error: {err}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--images", required=True, help="image folder (any DATA.ROOT layout)")
    parser.add_argument("--n", type=int, default=1024, help="probe images (rounded to batches)")
    parser.add_argument("--with-init", action="store_true",
                        help="also score the first checkpoint's config at its initialisation")
    args = parser.parse_args(argv)

    states = {path: load_checkpoint(path) for path in args.checkpoints}
    cfgs = {path: checkpoint_cfg(path, state) for path, state in states.items()}
    runs = [("init", None, cfgs[args.checkpoints[0]])] if args.with_init else []
    runs += [(path, states[path]["model"], cfgs[path]) for path in args.checkpoints]
    views = {}
    print(f"{'checkpoint':40s} " + " ".join(f"{c:>12s}" for c in COLUMNS))
    for name, weights, cfg in runs:
        key = cfg.dump()
        if key not in views:
            views[key] = probe_views(cfg, args.images, args.n)
        torch.manual_seed(cfg.SEED)  # the initialisation training starts from
        model = build_moco(cfg)
        if weights is not None:
            model.load_state_dict(weights)
        scores = fresh_key_scores(model, *views[key], batch_size=cfg.SOLVER.BATCH_SIZE)
        label = name if len(name) <= 40 else "..." + name[-37:]
        print(f"{label:40s} " + " ".join(f"{scores[c]:12.4f}" for c in COLUMNS), flush=True)
    n = len(next(iter(views.values()))[0])
    print(f"({n} probe images: chance fresh_acc {1 / n:.4f}; query_cosine 1.0 is collapse)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
