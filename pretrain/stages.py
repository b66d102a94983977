"""Every stage of the project by name: how its config is loaded (and checked) and how it runs,
resumed from its own checkpoints. The tools run one stage in this process; slurm/submit.py checks
the config before submitting, then runs the same function in each task of the job.

A stage's config comes from a YAML file and/or KEY VALUE overrides (for the sweep: tools/sweep.py's
own arguments). Its run function returns what a job reports back: a path or a number.
Functions are named "module:function" and imported only when used (detection needs Detectron2)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from .common.errors import ConfigError


def _resolve(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _dump(cfg) -> str:
    return cfg.dump()


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    loader: str  # (config_file, opts) -> config; raises ConfigError (or the stage's own error)
    runner: str  # (config, resume) -> a path, a number or None
    distributed: bool = True  # whether its tasks form one process group (else: one task)
    # The runner takes (config_file, opts, resume) and loads the config itself (Detectron2's setup).
    runner_loads: bool = False
    describer: str = "pretrain.stages:_dump"  # config -> text (the resolved config a job records)
    # config -> [(key, path)] of what the stage reads, checked before a job is submitted
    # (slurm/request_checks.py); "" where slurm/request_checks.py knows the config's keys.
    inputs: str = ""

    def load_config(self, config_file: str, opts: list[str]):
        return _resolve(self.loader)(config_file, list(opts))

    def describe(self, config) -> str:
        return _resolve(self.describer)(config)

    def input_paths(self, config) -> list[tuple[str, str]] | None:
        return _resolve(self.inputs)(config) if self.inputs else None

    def run(self, config_file: str, opts: list[str], resume: bool):
        if self.runner_loads:
            return _resolve(self.runner)(config_file, list(opts), resume=resume)
        return _resolve(self.runner)(self.load_config(config_file, opts), resume=resume)


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "pretrain",
            "contrastive pretraining (tools/pretrain.py)",
            "pretrain.config:load_cfg",
            "pretrain.pretraining:train",
        ),
        Stage(
            "lincls",
            "linear readout (tools/lincls.py)",
            "pretrain.config:load_lincls_cfg",
            "pretrain.evaluation.linear:run_linear_readout",
            distributed=False,
        ),
        Stage(
            "knn",
            "kNN readout (tools/knn.py's flags as MODEL.*, DATA.*, KNN.K keys)",
            "pretrain.evaluation.knn_stage:load_knn_cfg",
            "pretrain.evaluation.knn_stage:run_stage",
            distributed=False,
        ),
        Stage(
            "supervised",
            "supervised baseline (tools/supervised.py)",
            "pretrain.config:load_supervised_cfg",
            "pretrain.supervised:train_supervised",
            distributed=False,
        ),
        Stage(
            "finetune",
            "semi-supervised fine-tuning (tools/finetune.py)",
            "pretrain.config:load_finetune_cfg",
            "pretrain.finetune:run_finetune",
            distributed=False,
        ),
        Stage(
            "detection",
            "Detectron2 fine-tuning (detection/train_net.py)",
            "detection.config:load_detection_cfg",
            "detection.train_net:run_stage",
            runner_loads=True,
        ),
        Stage(
            "learn_views",
            "view learning (tools/learn_views.py's arguments)",
            "pretrain.commands.learn_views:arguments_from",
            "pretrain.commands.learn_views:run_stage",
            distributed=False,
            describer="pretrain.commands.learn_views:describe",
            inputs="pretrain.commands.learn_views:input_paths",
        ),
        Stage(
            "sweep",
            "a sweep's points one after the other (tools/sweep.py's arguments)",
            "pretrain.commands.sweep:sweep_from_arguments",
            "pretrain.commands.sweep:run_stage",
            distributed=False,
            describer="pretrain.commands.sweep:describe",
        ),
    )
}


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}: one of {', '.join(STAGES)}")
    return STAGES[name]
