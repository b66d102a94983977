"""Sweeps over views (InfoMin, Tian et al. 2020, Fig. 5): pretrain once per setting of a grid of
config keys, then measure what each run's views share (I_NCE on held-out images,
evaluation/mutual_info.py) and what the backbone learned (a kNN or linear readout). Plotted against
each other, views that share too little or too much information both read out worse than views
in between: the reverse U.

Every point lives in its own folder under the sweep's output folder, named after its setting; its
result.json is written atomically once everything is measured, so a rerun skips finished points
and resumes an interrupted one from its last pretraining checkpoint. Random initialisation is
measured the same way, as the "random_init" point: the baseline the plot marks.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import re
import time
from dataclasses import dataclass, field

import torch

from .config import load_cfg
from .engine.checkpoint import atomic_write_text, last_checkpoint, load_checkpoint
from .engine.progress import read_metrics
from .engine.trainer import train
from .evaluation.knn import knn_accuracy
from .evaluation.mutual_info import measure_info_nce
from .models.cmc import build_model, readout_backbone

READOUTS = ("knn", "linear")
READOUT_NAMES = {"knn": "kNN", "linear": "linear readout"}
RESULT_FILE = "result.json"
BASELINE = "random_init"


class SweepError(ValueError):
    """A sweep that cannot run as asked (grid, folders, readout); the message says which."""


@dataclass(frozen=True)
class SweepPoint:
    name: str  # its folder under the sweep's output folder
    setting: tuple[tuple[str, str], ...]  # (config key, value) of each grid axis
    random_init: bool = False  # the baseline: the base config's initialisation, not trained

    @property
    def label(self) -> str:
        """How the table and the plot name it."""
        if self.random_init:
            return "random init"
        return ", ".join(f"{key.split('.')[-1]} {value}" for key, value in self.setting) or "base"

    @property
    def overrides(self) -> list[str]:
        return [token for pair in self.setting for token in pair]


def _slug(value: str) -> str:
    """A value as part of a folder name: "(0.08,1.0)" -> "0.08-1.0"."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", value).strip("-") or "empty"


def grid_points(axes: list[tuple[str, list[str]]]) -> list[SweepPoint]:
    """The cartesian product of the axes, first axis slowest, each point named by its setting
    (the keys' last component, the full key where two axes would share it)."""
    keys = [key for key, _ in axes]
    if len(set(keys)) != len(keys):
        raise SweepError(f"--grid: a key given twice in {keys}")
    shorts = [key.split(".")[-1] for key in keys]
    names = [short if shorts.count(short) == 1 else key for short, key in zip(shorts, keys)]
    points = []
    for values in itertools.product(*(values for _, values in axes)):
        name = "__".join(f"{n}={_slug(v)}" for n, v in zip(names, values)) or "base"
        points.append(SweepPoint(name, tuple(zip(keys, values))))
    seen = [p.name for p in points]
    clash = sorted({n for n in seen if seen.count(n) > 1})
    if clash:
        raise SweepError(f"--grid: values that differ only in punctuation give one folder name "
                         f"to several points: {clash}")
    return points


@dataclass
class Sweep:
    """Everything a point needs to run on its own (it is pickled into each SLURM array task), so
    every path in it is absolute."""
    config_file: str
    fixed: list[str]  # KEY VALUE overrides of every point
    axes: list[tuple[str, list[str]]]
    output_dir: str
    heldout: str  # images for I_NCE, not seen in pretraining
    heldout_n: int = 512
    readout: str = "knn"
    linear_opts: list[str] = field(default_factory=list)  # KEY VALUE for the linear readout

    def __post_init__(self):
        self.config_file = os.path.abspath(self.config_file) if self.config_file else ""
        self.output_dir = os.path.abspath(self.output_dir)
        self.heldout = os.path.abspath(self.heldout)
        if self.readout not in READOUTS:
            raise SweepError(f"--readout {self.readout!r}: expected one of {READOUTS}")
        if len(self.fixed) % 2 or len(self.linear_opts) % 2:
            raise SweepError("overrides must be KEY VALUE pairs")
        if "OUTPUT_DIR" in self.fixed[::2] or any(k == "OUTPUT_DIR" for k, _ in self.axes):
            raise SweepError("OUTPUT_DIR is set by the sweep (each point's folder under --output)")
        if not os.path.isdir(self.heldout):
            raise SweepError(f"--heldout {self.heldout}: no such folder")

    def points(self) -> list[SweepPoint]:
        """The random-init baseline, then the grid."""
        return [SweepPoint(BASELINE, (), random_init=True), *grid_points(self.axes)]

    def point_dir(self, point: SweepPoint) -> str:
        return os.path.join(self.output_dir, point.name)

    def point_cfg(self, point: SweepPoint):
        return load_cfg(self.config_file, [*self.fixed, *point.overrides,
                                           "OUTPUT_DIR", self.point_dir(point)])

    def check(self) -> None:
        """Load every point's config and check the readout has its data: a typo fails here,
        before hours of pretraining."""
        for point in self.points():
            cfg = self.point_cfg(point)
            for key in ("KNN_TRAIN_ROOT", "KNN_TEST_ROOT"):
                root = cfg.EVAL[key]
                if not root or not os.path.isdir(root):
                    raise SweepError(f"point {point.name}: EVAL.{key} {root!r} is not a folder; "
                                     f"the readout needs labelled train and test folders")
            if not cfg.DATA.ROOT:
                raise SweepError(f"point {point.name}: DATA.ROOT is not set")
            if cfg.MODEL.CMC.ENABLED and self.readout == "linear":
                raise SweepError(f"point {point.name}: --readout linear reads one RGB backbone; "
                                 "a CMC sweep reads both view encoders out with --readout knn")


def read_result(sweep: Sweep, point: SweepPoint) -> dict | None:
    path = os.path.join(sweep.point_dir(point), RESULT_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def point_status(sweep: Sweep, point: SweepPoint) -> str:
    """done | resumes from <checkpoint> | new"""
    if read_result(sweep, point) is not None:
        return "done"
    previous = last_checkpoint(sweep.point_dir(point))
    return f"resumes from {os.path.basename(previous)}" if previous else "new"


def linear_readout(sweep: Sweep, cfg, checkpoint: str) -> float:
    """Top-1 (%) of a linear classifier on the frozen backbone, in the point's folder
    (resumable)."""
    from .evaluation.linear import load_lincls_cfg, run_linear_readout

    lincls = load_lincls_cfg(opts=[
        "MODEL.ARCH", cfg.MODEL.ARCH, "MODEL.WIDTH", cfg.MODEL.WIDTH, "MODEL.WEIGHTS", checkpoint,
        "DATA.ROOT", cfg.EVAL.KNN_TRAIN_ROOT, "DATA.VAL_ROOT", cfg.EVAL.KNN_TEST_ROOT,
        "DATA.CROP_SIZE", cfg.DATA.CROP_SIZE, "SEED", cfg.SEED,
        "OUTPUT_DIR", os.path.join(cfg.OUTPUT_DIR, "lincls"), *sweep.linear_opts])
    return run_linear_readout(lincls, resume=True)


def run_point(sweep: Sweep, point: SweepPoint) -> dict | None:
    """Pretrain (resuming), measure and read out one point; returns its result, or None when a
    scheduler's signal stopped the pretraining (it resumes on the requeued run)."""
    done = read_result(sweep, point)
    if done is not None:
        return done
    start = time.perf_counter()
    cfg = sweep.point_cfg(point)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    weights, checkpoint, iterations, train_loss = None, "", 0, None
    if not point.random_init:
        checkpoint = train(cfg, resume=True)
        if not checkpoint:
            return None
        state = load_checkpoint(checkpoint)
        weights, iterations = state["model"], state["iteration"]
        losses = [row["loss"] for row in read_metrics(cfg.OUTPUT_DIR) if "loss" in row]
        train_loss = losses[-1] if losses else None
    os.makedirs(sweep.point_dir(point), exist_ok=True)

    def trained_model():
        torch.manual_seed(cfg.SEED)  # the initialisation pretraining starts from
        model = build_model(cfg)
        if weights is not None:
            model.load_state_dict(weights)
        return model.to(device)

    if sweep.readout == "knn":
        accuracy = knn_accuracy(readout_backbone(trained_model(), cfg), cfg.EVAL.KNN_TRAIN_ROOT,
                                cfg.EVAL.KNN_TEST_ROOT, cfg.DATA.CROP_SIZE, device,
                                cfg.EVAL.KNN_TRAIN_LIMIT, cfg.EVAL.KNN_TEST_LIMIT, cfg.EVAL.KNN_K,
                                num_workers=cfg.DATA.NUM_WORKERS)
    else:
        accuracy = linear_readout(sweep, cfg, checkpoint)
    # A model of its own: measuring in train mode moves BN running statistics, which the
    # readout must not see.
    info = measure_info_nce(trained_model(), cfg, sweep.heldout, sweep.heldout_n)
    result = {
        "name": point.name, "label": point.label, "setting": dict(point.setting),
        "random_init": point.random_init, "i_nce": info["i_nce"], "i_nce_bound": info["bound"],
        "heldout_images": info["n"], "heldout_loss": info["loss"], "heldout_acc": info["acc"],
        "readout": sweep.readout, "accuracy": accuracy, "train_loss": train_loss,
        "iterations": iterations, "seconds": time.perf_counter() - start,
        "checkpoint": checkpoint,
    }
    atomic_write_text(json.dumps(result, indent=2) + "\n",
                      os.path.join(sweep.point_dir(point), RESULT_FILE))
    return result


def run_local(sweep: Sweep, log=print) -> list[dict]:
    """Every point in turn, finished ones skipped; then the table and the plot."""
    points = sweep.points()
    for i, point in enumerate(points, 1):
        log(f"[{i}/{len(points)}] {point.name}: {point_status(sweep, point)}")
        result = run_point(sweep, point)
        if result is not None:
            log(f"[{i}/{len(points)}] {point.name}: I_NCE {result['i_nce']:.3f} "
                f"(bound {result['i_nce_bound']:.3f}), {sweep.readout} {result['accuracy']:.2f}%")
    return write_report(sweep)


# -- the table and the plot -------------------------------------------------------------------

COLUMNS = ("label", "i_nce", "i_nce_bound", "accuracy", "above_random_init", "heldout_loss",
           "heldout_acc", "train_loss", "iterations", "seconds", "name")


def write_report(sweep: Sweep) -> list[dict]:
    """results.json, results.csv, results.md and reverse_u.png in the output folder, from the
    points finished so far (the rest are listed as missing). Returns the rows."""
    import csv

    rows, missing = [], []
    for point in sweep.points():
        result = read_result(sweep, point)
        if result is None:
            missing.append(point.name)
        else:
            rows.append(result)
    baseline = next((r["accuracy"] for r in rows if r["random_init"]), None)
    for row in rows:
        row["above_random_init"] = (None if baseline is None or row["random_init"]
                                    else row["accuracy"] > baseline)
    os.makedirs(sweep.output_dir, exist_ok=True)
    out = sweep.output_dir
    atomic_write_text(json.dumps({"readout": sweep.readout, "rows": rows, "missing": missing},
                                 indent=2) + "\n", os.path.join(out, "results.json"))
    with open(os.path.join(out, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(markdown_table(rows, missing, sweep.readout),
                      os.path.join(out, "results.md"))
    if rows:
        plot_reverse_u(rows, sweep.readout, os.path.join(out, "reverse_u.png"))
    return rows


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[dict], missing: list[str], readout: str) -> str:
    lines = [f"| setting | I_NCE (nats) | bound log N | {READOUT_NAMES[readout]} top-1 (%) "
             f"| above random init | held-out loss | train loss | iterations | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {_fmt(r['i_nce'])} | {_fmt(r['i_nce_bound'])} "
                     f"| {_fmt(r['accuracy'], 2)} | {_fmt(r['above_random_init'])} "
                     f"| {_fmt(r['heldout_loss'])} | {_fmt(r['train_loss'])} | {r['iterations']} "
                     f"| {_fmt(r['seconds'], 0)} |")
    if missing:
        lines.append("")
        lines.append(f"Not finished yet: {', '.join(missing)}.")
    return "\n".join(lines) + "\n"


def plot_reverse_u(rows: list[dict], readout: str, path: str) -> None:
    """Readout accuracy against I_NCE, each point labelled by its setting; random init as a
    dashed line, the points above it filled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    baseline = next((r for r in rows if r["random_init"]), None)
    if baseline is not None:
        ax.axhline(baseline["accuracy"], color="grey", linestyle="--", linewidth=1,
                   label=f"random init ({baseline['accuracy']:.1f}%)")
        ax.scatter([baseline["i_nce"]], [baseline["accuracy"]], marker="x", color="grey")
    trained = [r for r in rows if not r["random_init"]]
    for above, style in ((True, dict(color="tab:green", label="above random init")),
                         (False, dict(facecolors="none", edgecolors="tab:red",
                                      label="not above random init"))):
        chosen = [r for r in trained if bool(r["above_random_init"]) == above]
        if chosen:
            ax.scatter([r["i_nce"] for r in chosen], [r["accuracy"] for r in chosen], s=60,
                       **style)
    for r in trained:
        ax.annotate(r["label"], (r["i_nce"], r["accuracy"]), textcoords="offset points",
                    xytext=(5, 5), fontsize=8)
    bounds = {round(r["i_nce_bound"], 6) for r in rows}
    for bound in bounds:
        ax.axvline(bound, color="lightgrey", linestyle=":", linewidth=1)
    ax.set_xlabel("I_NCE on held-out views (nats; dotted: log N, the most it can show)")
    ax.set_ylabel(f"{READOUT_NAMES[readout]} top-1 (%)")
    ax.set_title("Readout against the information the views share (InfoMin Fig. 5)")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
