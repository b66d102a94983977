#!/usr/bin/env python
"""Fine-tune and evaluate a Detectron2 model from pretrained backbone weights.

    python detection/train_net.py --config-file configs/detection/CFG.yaml [--num-gpus N] \
        [--eval-only] [--resume] [KEY VALUE ...]

Detectron2's own argument parser and trainer, plus: the Res5ROIHeadsExtraNorm head, datasets
registered from DATASETS.REGISTER specs, the evaluator chosen by the dataset (COCO or Pascal VOC),
and the final metrics written to OUTPUT_DIR/metrics_eval.json.
"""
import json
import math
import os

import detection  # noqa: F401  (must come before detectron2: supplies missing compiled ops)
import detection.modeling  # noqa: F401  (registers Res5ROIHeadsExtraNorm)
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import (DefaultTrainer, HookBase, default_argument_parser, default_setup,
                               launch)
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.utils import comm

from detection.compat import check_config_ops, has_compiled_ops
from detection.config import apply_batch_scale, load_detection_cfg, sync_norms_for_cpu_processes
from detection.datasets import register_from_specs
from detection.launch import launch_cpu
from pretrain.common.cli import run_entry_point
from pretrain.common.errors import DatasetError
from pretrain.common.preemption import CheckpointBeforeRequeue

METRICS_FILE = "metrics_eval.json"


class CheckpointBeforeRequeueHook(HookBase):
    """After the iteration in which SLURM announced the end of the time slot: save a checkpoint
    (that --resume continues from), then let submitit requeue the job."""

    def __init__(self, preemption: CheckpointBeforeRequeue):
        self.preemption = preemption

    def after_step(self):
        if self.preemption.requested(self.trainer.cfg.MODEL.DEVICE):
            self.trainer.checkpointer.save(f"model_{self.trainer.iter:07d}",
                                           iteration=self.trainer.iter)
            comm.synchronize()
            self.preemption.hand_over()


class Trainer(DefaultTrainer):
    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        kind = MetadataCatalog.get(dataset_name).get("evaluator_type")
        if kind == "coco":
            output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
            # The fast evaluator is compiled C++; the Python-only Detectron2 uses pycocotools.
            return COCOEvaluator(dataset_name, output_dir=output_folder,
                                 use_fast_impl=has_compiled_ops())
        if kind == "pascal_voc":
            return PascalVOCDetectionEvaluator(dataset_name)
        raise DatasetError(f"dataset {dataset_name}: no evaluator for evaluator_type {kind!r} "
                         "(expected a COCO-format or Pascal VOC dataset)")


def check_dataset_paths(cfg) -> None:
    """Fail before training, naming the file, if a dataset's annotation file or images are missing
    (Detectron2's built-in names read $DETECTRON2_DATASETS, default ./datasets)."""
    for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
        if name not in DatasetCatalog.list():
            raise DatasetError(f"dataset {name!r} is not registered: use a built-in name "
                             "or add a spec to DATASETS.REGISTER")
        meta = MetadataCatalog.get(name)
        for field in ("json_file", "image_root", "dirname"):
            path = meta.get(field)
            if path and not os.path.exists(path):
                raise DatasetError(f"dataset {name}: {field} {path}: no such file or folder"
                                 " (set $DETECTRON2_DATASETS for the built-in datasets)")


def setup(args):
    cfg = load_detection_cfg(args.config_file, args.opts)
    apply_batch_scale(cfg)
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
        if comm.get_world_size() > 1:
            sync_norms_for_cpu_processes(cfg)
    register_from_specs(cfg.DATASETS.REGISTER)
    check_dataset_paths(cfg)
    check_config_ops(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    return cfg


def write_metrics(cfg, results) -> None:
    """OUTPUT_DIR/metrics_eval.json: {dataset: {task: {metric: value}}}, NaN written as null."""
    if not comm.is_main_process() or not results:
        return
    if len(cfg.DATASETS.TEST) == 1 and cfg.DATASETS.TEST[0] not in results:
        results = {cfg.DATASETS.TEST[0]: results}  # Detectron2 unwraps a single dataset's results
    clean = {dataset: {task: {k: (None if math.isnan(v) else v) for k, v in metrics.items()}
                       for task, metrics in tasks.items()} for dataset, tasks in results.items()}
    path = os.path.join(cfg.OUTPUT_DIR, METRICS_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(clean, f, indent=2)
    os.replace(tmp, path)


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        write_metrics(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    with CheckpointBeforeRequeue() as preemption:
        trainer.register_hooks([CheckpointBeforeRequeueHook(preemption)])
        trainer.train()
    results = getattr(trainer, "_last_eval_results", None)
    write_metrics(cfg, results)
    return results


def run_stage(config_file: str, opts: list[str], resume: bool = True):
    """The detection stage (pretrain/stages.py), in a process that SLURM, torchrun or our
    launcher started: Detectron2's trainer in the process group the environment describes."""
    from detection.launch import run_from_env

    args = default_argument_parser().parse_args(
        ["--config-file", config_file, *(["--resume"] if resume else []), *opts])
    return run_from_env(main, (args,))


def cli(argv=None):
    args = default_argument_parser().parse_args(argv)
    if not torch.cuda.is_available():
        # --num-gpus N on a machine without GPUs: N CPU processes through gloo.
        return launch_cpu(main, args.num_gpus, args=(args,))
    return launch(main, args.num_gpus, num_machines=args.num_machines,
                  machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))


def entry_point() -> None:
    run_entry_point(cli)


if __name__ == "__main__":
    entry_point()
