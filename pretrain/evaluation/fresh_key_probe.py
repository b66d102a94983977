"""The fresh-key probe of pretraining checkpoints (tools/fresh_keys.py, the demo): each checkpoint
is rebuilt from the config it stores, its probe images get that config's views (epoch 0 of its
seed), and it is scored against fresh keys in batches of its SOLVER.BATCH_SIZE (fresh_keys.py).

Kept apart from fresh_keys.py, the scoring itself, because the views come from mutual_info.py,
which scores with fresh_keys.py in turn."""

from __future__ import annotations

import json
import math
from typing import Callable

import torch
from fvcore.common.config import CfgNode

from ..common.errors import CheckpointError
from ..config import get_cfg
from ..engine.checkpoint import load_checkpoint
from ..formats import ConversionError, detect_format
from ..models.cmc import CMC
from ..models.registry import build_model
from .fresh_keys import fresh_key_scores
from .mutual_info import heldout_views

COLUMNS = ("queue_acc", "fresh_acc", "queue_loss", "fresh_loss", "chance_loss", "query_cosine")
INIT = "init"  # the row of the first checkpoint's config at its initialisation (--with-init)
LABEL_WIDTH = 40


class NotAPretrainingCheckpointError(CheckpointError):
    """The probe rebuilds the model from the config a tools/pretrain.py checkpoint stores."""


def checkpoint_cfg(path: str, state: dict) -> CfgNode:
    """The full pretraining config `state` (a tools/pretrain.py checkpoint read from `path`) was
    trained with: the defaults of today, overridden by the stored keys."""
    try:
        layout = detect_format(state)
    except ConversionError as err:
        layout = str(err)
    if layout != "pretrain":
        raise NotAPretrainingCheckpointError(
            f"{path}: not a checkpoint of tools/pretrain.py ({layout})"
        )
    cfg = get_cfg()
    cfg.merge_from_other_cfg(CfgNode.load_cfg(state["cfg"]))
    return cfg


def probe_checkpoints(
    paths: list[str],
    images: str,
    n: int = 1024,
    with_init: bool = False,
    on_row: Callable[[dict], None] | None = None,
) -> dict:
    """Score each checkpoint of `paths` (and, with `with_init`, the first one's config at the
    initialisation its training started from) on up to n images of `images`, rounded down to
    whole batches. Returns {"probe_images": N, "chance_fresh_acc": 1 / N, "rows": [{"checkpoint":
    path or "init", COLUMNS...}]}; `on_row` gets each row as soon as it is scored."""
    states = {path: load_checkpoint(path) for path in paths}
    cfgs = {path: checkpoint_cfg(path, state) for path, state in states.items()}
    runs = [(INIT, None, cfgs[paths[0]])] if with_init else []
    runs += [(path, states[path]["model"], cfgs[path]) for path in paths]
    views, rows = {}, []
    for name, weights, cfg in runs:
        key = cfg.dump()
        if key not in views:
            views[key] = heldout_views(cfg, images, n)
        torch.manual_seed(cfg.SEED)  # the initialisation training starts from
        model = build_model(cfg)
        if isinstance(model, CMC):
            raise NotAPretrainingCheckpointError(
                f"{name}: a CMC checkpoint; the fresh-key probe scores one encoder's queries "
                "against its own keys, CMC's views have one encoder each (tools/sweep.py "
                "measures CMC's held-out I_NCE between its views)"
            )
        if weights is not None:
            model.load_state_dict(weights)
        scores = fresh_key_scores(model, *views[key], batch_size=cfg.SOLVER.BATCH_SIZE)
        rows.append({"checkpoint": name, **{column: scores[column] for column in COLUMNS}})
        if on_row:
            on_row(rows[-1])
    probe_images = len(next(iter(views.values()))[0])
    return {"probe_images": probe_images, "chance_fresh_acc": 1 / probe_images, "rows": rows}


def header_line() -> str:
    return f"{'checkpoint':{LABEL_WIDTH}s} " + " ".join(f"{c:>12s}" for c in COLUMNS)


def row_line(row: dict) -> str:
    """One checkpoint's scores, 4 decimals, its path shortened from the left to fit."""
    name = row["checkpoint"]
    label = name if len(name) <= LABEL_WIDTH else "..." + name[-(LABEL_WIDTH - 3) :]
    return f"{label:{LABEL_WIDTH}s} " + " ".join(f"{row[c]:12.4f}" for c in COLUMNS)


def footer_line(result: dict) -> str:
    return (
        f"({result['probe_images']} probe images: chance fresh_acc "
        f"{result['chance_fresh_acc']:.4f}; query_cosine 1.0 is collapse)"
    )


def table(result: dict) -> str:
    """The probe as the tool prints it: a header, one line per checkpoint, the chance level."""
    return "\n".join([header_line(), *map(row_line, result["rows"]), footer_line(result)])


def as_json(result: dict) -> dict:
    """`result` with the NaN of a model without a queue as None: null in JSON, which has no NaN."""
    rows = [
        {
            key: None if isinstance(value, float) and math.isnan(value) else value
            for key, value in row.items()
        }
        for row in result["rows"]
    ]
    return {**result, "rows": rows}


def write_json(result: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(as_json(result), f, indent=1)
        f.write("\n")
