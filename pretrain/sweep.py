"""Sweeps over views (InfoMin, Tian et al. 2020, Fig. 5): pretrain once per setting of a grid of
config keys, then measure what each run's views share (I_NCE on held-out images,
evaluation/mutual_info.py) and what the backbone learned (a kNN or linear readout). Plotted against
each other, views that share too little or too much information both read out worse than views
in between: the reverse U.

Every point lives in its own folder under the sweep's output folder, named after its setting (and
with --seeds, one folder per seed below it); its result.json is written atomically once everything
is measured, so a rerun skips finished points and resumes an interrupted one from its last
pretraining checkpoint. Random initialisation is measured the same way, as the "random_init"
point, over the same seeds (pretraining seed s starts from random init s): the baseline.

A point is judged by a test, not by its mean: each setting's kNN predictions, image by image and
seed by seed, are compared with random init's by a paired bootstrap over seeds and test images
(evaluation/paired_tests.py); "above random init" means significantly above at the 5% level.
Across the settings the report gives Spearman's rho between I_NCE and accuracy with its interval,
and tests the reverse U: the best setting against the two ends of the I_NCE axis.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from dataclasses import dataclass, field

import torch

from .config import load_cfg
from .engine.checkpoint import atomic_write_text, last_checkpoint, load_checkpoint
from .engine.progress import read_metrics
from .pretraining import train
from .evaluation.knn import knn_of_config
from .evaluation.mutual_info import BN_MODES, measure_info_nce
from .models.registry import build_model

READOUTS = ("knn", "linear")
RESULT_FILE = "result.json"
BASELINE = "random_init"


# A config key in --heldout: "{DATA.ROOT}/../heldout".
HELDOUT_KEY = re.compile(r"\{([A-Z][A-Z0-9_]*(?:\.[A-Z][A-Z0-9_]*)*)\}")


class SweepError(ValueError):
    """A sweep that cannot run as asked (grid, folders, readout); the message says which."""


@dataclass(frozen=True)
class SweepPoint:
    name: str  # the setting's folder under the sweep's output folder
    setting: tuple[tuple[str, str], ...]  # (config key, value) of each grid axis
    random_init: bool = False  # the baseline: the base config's initialisation, not trained
    seed: int | None = None  # SEED of this run; None: the config's own (a sweep without --seeds)

    @property
    def folder(self) -> str:
        """Its folder under the sweep's output folder: the setting's, or seed<s> inside it."""
        return self.name if self.seed is None else os.path.join(self.name, f"seed{self.seed}")

    @property
    def label(self) -> str:
        """How the table and the plot name it."""
        if self.random_init:
            return "random init"
        return ", ".join(f"{key.split('.')[-1]} {value}" for key, value in self.setting) or "base"

    @property
    def overrides(self) -> list[str]:
        seed = [] if self.seed is None else ["SEED", str(self.seed)]
        return [token for pair in self.setting for token in pair] + seed


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
        raise SweepError(
            f"--grid: values that differ only in punctuation give one folder name "
            f"to several points: {clash}"
        )
    return points


@dataclass
class Sweep:
    """Everything a point needs to run on its own (it is pickled into each SLURM array task), so
    every path in it is absolute."""

    config_file: str
    fixed: list[str]  # KEY VALUE overrides of every point
    axes: list[tuple[str, list[str]]]
    output_dir: str
    heldout: str  # images for I_NCE, not seen in pretraining; may name config keys ({DATA.ROOT})
    heldout_n: int = 512
    readout: str = "knn"
    linear_opts: list[str] = field(default_factory=list)  # KEY VALUE for the linear readout
    seeds: list[int] = field(default_factory=list)  # SEED of each run; []: the config's own
    heldout_bn: str = "eval"  # batch norm while measuring I_NCE (evaluation/mutual_info.py)

    def __post_init__(self):
        self.config_file = os.path.abspath(self.config_file) if self.config_file else ""
        self.output_dir = os.path.abspath(self.output_dir)
        if not HELDOUT_KEY.search(self.heldout):  # a template is resolved point by point
            self.heldout = os.path.abspath(self.heldout)
        if self.readout not in READOUTS:
            raise SweepError(f"--readout {self.readout!r}: expected one of {READOUTS}")
        if len(self.fixed) % 2 or len(self.linear_opts) % 2:
            raise SweepError("overrides must be KEY VALUE pairs")
        if "OUTPUT_DIR" in self.fixed[::2] or any(k == "OUTPUT_DIR" for k, _ in self.axes):
            raise SweepError("OUTPUT_DIR is set by the sweep (each point's folder under --output)")
        if not HELDOUT_KEY.search(self.heldout) and not os.path.isdir(self.heldout):
            raise SweepError(f"--heldout {self.heldout}: no such folder")
        if len(set(self.seeds)) != len(self.seeds):
            raise SweepError(f"--seeds {self.seeds}: a seed given twice")
        if "SEED" in self.fixed[::2] and self.seeds:
            raise SweepError("SEED is set by --seeds; leave it out of --set")
        if self.heldout_bn not in BN_MODES:
            raise SweepError(f"--heldout-bn {self.heldout_bn!r}: expected one of {BN_MODES}")

    def points(self) -> list[SweepPoint]:
        """Seed by seed (so that a partial sweep already has whole seeds to compare): the
        random-init baseline, then the grid."""
        settings = [SweepPoint(BASELINE, (), random_init=True), *grid_points(self.axes)]
        if not self.seeds:
            return settings
        return [
            SweepPoint(p.name, p.setting, p.random_init, seed)
            for seed in self.seeds
            for p in settings
        ]

    def point_dir(self, point: SweepPoint) -> str:
        return os.path.join(self.output_dir, point.folder)

    def point_cfg(self, point: SweepPoint):
        return load_cfg(
            self.config_file, [*self.fixed, *point.overrides, "OUTPUT_DIR", self.point_dir(point)]
        )

    def heldout_root(self, cfg) -> str:
        """The held-out images of a point: --heldout, with each {KEY} replaced by the point's
        config value (e.g. "{DATA.ROOT}/../heldout": each point's own held-out views, where the
        points are different worlds of views)."""

        def value(match) -> str:
            node = cfg
            for part in match.group(1).split("."):
                if not hasattr(node, part):
                    raise SweepError(f"--heldout {self.heldout}: no config key {match.group(1)}")
                node = getattr(node, part)
            return str(node)

        return os.path.normpath(os.path.abspath(HELDOUT_KEY.sub(value, self.heldout)))

    def check(self) -> None:
        """Load every point's config and check the readout has its data: a typo fails here,
        before hours of pretraining."""
        for point in self.points():
            cfg = self.point_cfg(point)
            for key in ("KNN_TRAIN_ROOT", "KNN_TEST_ROOT"):
                root = cfg.EVAL[key]
                if not root or not os.path.isdir(root):
                    raise SweepError(
                        f"point {point.name}: EVAL.{key} {root!r} is not a folder; "
                        f"the readout needs labelled train and test folders"
                    )
            if not cfg.DATA.ROOT:
                raise SweepError(f"point {point.name}: DATA.ROOT is not set")
            if not os.path.isdir(self.heldout_root(cfg)):
                raise SweepError(
                    f"point {point.name}: --heldout {self.heldout_root(cfg)}: no such folder"
                )
            if cfg.MODEL.CMC.ENABLED and self.readout == "linear":
                raise SweepError(
                    f"point {point.name}: --readout linear reads one RGB backbone; "
                    "a CMC sweep reads both view encoders out with --readout knn"
                )


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

    lincls = load_lincls_cfg(
        opts=[
            "MODEL.ARCH",
            cfg.MODEL.ARCH,
            "MODEL.WIDTH",
            cfg.MODEL.WIDTH,
            "MODEL.WEIGHTS",
            checkpoint,
            "DATA.ROOT",
            cfg.EVAL.KNN_TRAIN_ROOT,
            "DATA.VAL_ROOT",
            cfg.EVAL.KNN_TEST_ROOT,
            "DATA.CROP_SIZE",
            cfg.DATA.CROP_SIZE,
            "SEED",
            cfg.SEED,
            "OUTPUT_DIR",
            os.path.join(cfg.OUTPUT_DIR, "lincls"),
            *sweep.linear_opts,
        ]
    )
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

    per_image = {}  # the kNN's predictions on the (fixed) test images: the paired test's input
    if sweep.readout == "knn":
        knn = knn_of_config(trained_model().readout_backbone(cfg), cfg, device)
        accuracy = knn["top1"]
        per_image = {"predictions": knn["predictions"], "labels": knn["labels"]}
    else:
        accuracy = linear_readout(sweep, cfg, checkpoint)
    # A model of its own: measuring in train mode (--heldout-bn train) moves BN running
    # statistics, which the readout must not see.
    info = measure_info_nce(
        trained_model(), cfg, sweep.heldout_root(cfg), sweep.heldout_n, bn=sweep.heldout_bn
    )
    result = {
        "name": point.name,
        "label": point.label,
        "setting": dict(point.setting),
        "random_init": point.random_init,
        "seed": cfg.SEED,
        "i_nce": info["i_nce"],
        "i_nce_bound": info["bound"],
        "i_er": info["i_er"],
        "er_entropy": info["er_entropy"],
        "er_reconstruction": info["er_reconstruction"],
        "heldout": sweep.heldout_root(cfg),
        "heldout_bn": info["bn"],
        "heldout_images": info["n"],
        "heldout_loss": info["loss"],
        "heldout_acc": info["acc"],
        "readout": sweep.readout,
        "accuracy": accuracy,
        "train_loss": train_loss,
        "iterations": iterations,
        "seconds": time.perf_counter() - start,
        "checkpoint": checkpoint,
        **per_image,
    }
    atomic_write_text(
        json.dumps(result, indent=2) + "\n", os.path.join(sweep.point_dir(point), RESULT_FILE)
    )
    return result


def run_local(sweep: Sweep, log=print) -> list[dict]:
    """Every point in turn, finished ones skipped; then the table and the plot."""
    points = sweep.points()
    for i, point in enumerate(points, 1):
        log(f"[{i}/{len(points)}] {point.folder}: {point_status(sweep, point)}")
        result = run_point(sweep, point)
        if result is not None:
            log(
                f"[{i}/{len(points)}] {point.folder}: I_NCE {result['i_nce']:.3f} "
                f"(bound {result['i_nce_bound']:.3f}), I_ER {result['i_er']:.3f}, "
                f"{sweep.readout} {result['accuracy']:.2f}%"
            )
    return write_report(sweep)


def write_report(sweep: Sweep) -> list[dict]:
    """The table, tests and plot of the points finished so far (pretrain/sweep_report.py);
    returns the finished runs' results."""
    from .sweep_report import write_sweep_report

    rows, missing = [], []
    for point in sweep.points():
        result = read_result(sweep, point)
        if result is None:
            missing.append(point.folder)
        else:
            rows.append(result)
    write_sweep_report(rows, missing, sweep.readout, sweep.output_dir)
    return rows
