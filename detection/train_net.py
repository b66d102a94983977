#!/usr/bin/env python
"""Fine-tune and evaluate a Detectron2 model from pretrained backbone weights.

    python detection/train_net.py --config-file configs/detection/CFG.yaml [--num-gpus N] \
        [--eval-only] [--resume] [KEY VALUE ...]

Detectron2's own argument parser and trainer, plus: the Res5ROIHeadsExtraNorm head, datasets
registered from DATASETS.REGISTER specs, the evaluator chosen by the dataset (COCO or Pascal VOC),
and the final metrics written to OUTPUT_DIR/metrics_eval.json.
"""

import json
import logging
import math
import os

import detection  # noqa: F401  (must come before detectron2: supplies missing compiled ops)
import detection.modeling  # noqa: F401  (registers Res5ROIHeadsExtraNorm)
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import (
    DefaultTrainer,
    HookBase,
    default_argument_parser,
    default_setup,
    launch,
)
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.utils import comm

from detection.compat import check_config_ops, has_compiled_ops
from detection.config import apply_batch_scale, load_detection_cfg, sync_norms_for_cpu_processes
from detection.data_checks import (
    check_detection_data,
    checked_test_loader,
    checked_train_loader,
    report_unannotated,
)
from detection.datasets import register_from_specs
from detection.launch import launch_cpu
from detection.output_folder import last_checkpoint, prepare_detection_output, resume_hint
from detection.plain_logs import plain_text_logs
from detection.run_lines import log_end, log_start
from detection.settings_checks import (
    check_backbone_weights,
    check_eval_weights,
    check_num_classes,
    check_weights_path,
)
from pretrain.common.cli import apply_trailing_flags, run_entry_point
from pretrain.common.cpu_bf16 import cpu_amp_note, cpu_has_native_bf16, train_in_cpu_bf16
from pretrain.common.errors import DatasetError, TrainingDivergedError
from pretrain.common.preemption import CheckpointBeforeRequeue

METRICS_FILE = "metrics_eval.json"
HELP_EPILOG = """Config keys: Detectron2's
(https://detectron2.readthedocs.io/en/latest/modules/config.html) plus this project's, documented
in detection/config.py: DATASETS.REGISTER (one-line COCO-json or VOC dataset specs, see
detection/datasets.py), SOLVER.BATCH_SCALE, MODEL.RESNETS.STEM_TYPE,
DATASETS.ALLOW_NUM_CLASSES_MISMATCH, MODEL.BACKBONE.MAX_RANDOM_FRACTION.
A non-empty OUTPUT_DIR is refused unless --resume (continue the run there, of the same model,
weights, data and seed) or --force (write over it); --resume, --force and --eval-only may also
come after the KEY VALUE pairs.
Example: %(prog)s --config-file configs/detection/small/bccd_R_18_C4.yaml \\
    MODEL.WEIGHTS backbone_d2.pkl OUTPUT_DIR output/bccd_seed1 SEED 1"""


class CheckpointBeforeRequeueHook(HookBase):
    """After the iteration in which SLURM announced the end of the time slot: save a checkpoint
    (that --resume continues from), then let submitit requeue the job."""

    def __init__(self, preemption: CheckpointBeforeRequeue):
        self.preemption = preemption

    def after_step(self):
        if self.preemption.requested(self.trainer.cfg.MODEL.DEVICE):
            self.trainer.checkpointer.save(
                f"model_{self.trainer.iter:07d}", iteration=self.trainer.iter
            )
            comm.synchronize()
            self.preemption.hand_over()


class Trainer(DefaultTrainer):
    @classmethod
    def build_model(cls, cfg):
        model = super().build_model(cfg)
        check_backbone_weights(cfg, model)  # before the data loader is built: fails fast
        if cfg.SOLVER.CPU_AMP and cfg.MODEL.DEVICE == "cpu":
            if cpu_has_native_bf16():
                model = train_in_cpu_bf16(model)
            elif comm.is_main_process():
                logging.getLogger("detectron2").info(cpu_amp_note())
        return model

    @classmethod
    def build_train_loader(cls, cfg):
        return checked_train_loader(cfg)  # an unreadable image is named, not a worker crash

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return checked_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        kind = MetadataCatalog.get(dataset_name).get("evaluator_type")
        if kind == "coco":
            output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
            # The fast evaluator is compiled C++; the Python-only Detectron2 uses pycocotools.
            return COCOEvaluator(
                dataset_name, output_dir=output_folder, use_fast_impl=has_compiled_ops()
            )
        if kind == "pascal_voc":
            return PascalVOCDetectionEvaluator(dataset_name)
        raise DatasetError(
            f"dataset {dataset_name}: no evaluator for evaluator_type {kind!r} "
            "(expected a COCO-format or Pascal VOC dataset)"
        )


def check_dataset_paths(cfg) -> None:
    """Fail before training, naming the file, if a dataset's annotation file or images are missing
    (Detectron2's built-in names read $DETECTRON2_DATASETS, default ./datasets)."""
    for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
        if name not in DatasetCatalog.list():
            raise DatasetError(
                f"dataset {name!r} is not registered: use a built-in name "
                "or add a spec to DATASETS.REGISTER"
            )
        meta = MetadataCatalog.get(name)
        for field in ("json_file", "image_root", "dirname"):
            path = meta.get(field)
            if path and not os.path.exists(path):
                raise DatasetError(
                    f"dataset {name}: {field} {path}: no such file or folder"
                    " (set $DETECTRON2_DATASETS for the built-in datasets)"
                )


def setup(args):
    cfg = load_detection_cfg(args.config_file, args.opts)
    apply_batch_scale(cfg)
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
        if comm.get_world_size() > 1:
            sync_norms_for_cpu_processes(cfg)
    register_from_specs(cfg.DATASETS.REGISTER)
    check_dataset_paths(cfg)
    check_num_classes(cfg)
    if not getattr(args, "resume", False):  # a resume continues from the run's own checkpoint
        check_weights_path(cfg)
    if comm.is_main_process():  # before anything (bad_images.txt, config.yaml) is written there
        args.folder_state = prepare_detection_output(cfg, args)
    check_detection_data(
        cfg,
        list(cfg.DATASETS.TEST)
        if getattr(args, "eval_only", False)
        else [*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST],
        comm.is_main_process(),
    )
    if not getattr(args, "eval_only", False):
        report_unannotated(cfg, cfg.DATASETS.TRAIN, comm.is_main_process())
    check_config_ops(cfg)
    cfg.freeze()
    # The other processes write their log.txt.rank<N> into the folder: only after rank 0 looked
    # at it, or it would find their logs and refuse a fresh run's folder as another run's.
    comm.synchronize()
    plain_text_logs(cfg.OUTPUT_DIR)  # the handlers default_setup logs the config through
    default_setup(cfg, args)
    return cfg


def write_metrics(cfg, results) -> None:
    """OUTPUT_DIR/metrics_eval.json: {dataset: {task: {metric: value}}}, NaN written as null."""
    if not comm.is_main_process() or not results:
        return
    if len(cfg.DATASETS.TEST) == 1 and cfg.DATASETS.TEST[0] not in results:
        results = {cfg.DATASETS.TEST[0]: results}  # Detectron2 unwraps a single dataset's results
    clean = {
        dataset: {
            task: {k: (None if math.isnan(v) else v) for k, v in metrics.items()}
            for task, metrics in tasks.items()
        }
        for dataset, tasks in results.items()
    }
    path = os.path.join(cfg.OUTPUT_DIR, METRICS_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(clean, f, indent=2)
    os.replace(tmp, path)


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        if not (args.resume and last_checkpoint(cfg.OUTPUT_DIR)):  # else the run's own checkpoint
            check_eval_weights(cfg, model)  # a head of another class count: refused, not scored
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = Trainer.test(cfg, model)
        write_metrics(cfg, results)
        log_end(cfg, results, METRICS_FILE, trained=False)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    log_start(cfg, trainer, args.resume, getattr(args, "folder_state", ""))
    with CheckpointBeforeRequeue() as preemption:
        trainer.register_hooks([CheckpointBeforeRequeueHook(preemption)])
        try:
            trainer.train()
        except FloatingPointError as err:  # Detectron2's check of a NaN / infinite loss
            first_line = str(err).splitlines()[0]
            raise TrainingDivergedError(
                f"detection training diverged: {first_line.rstrip('!.')}. Lower SOLVER.BASE_LR; "
                f"{resume_hint(cfg.OUTPUT_DIR)}"
            ) from None
    results = getattr(trainer, "_last_eval_results", None)
    write_metrics(cfg, results)
    log_end(cfg, results, METRICS_FILE, trained=True)
    return results


def parse_args(argv=None):
    """Detectron2's arguments plus --force; --resume, --force and --eval-only anywhere."""
    parser = default_argument_parser(epilog=HELP_EPILOG)
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty OUTPUT_DIR (same-named files are overwritten)",
    )
    parser.add_argument(
        "--check-data",
        action="store_true",
        help="decode every train and test image before training (DATASETS.CHECK "
        "decode); bad ones are left out or stop the run "
        "(DATASETS.ON_BAD_IMAGE)",
    )
    args = parser.parse_args(argv)
    apply_trailing_flags(args, ("--resume", "--force", "--eval-only", "--check-data"))
    if args.check_data:
        args.opts = [*args.opts, "DATASETS.CHECK", "decode"]
    return args


def run_stage(config_file: str, opts: list[str], resume: bool = True):
    """The detection stage (pretrain/stages.py), in a process that SLURM, torchrun or our
    launcher started: Detectron2's trainer in the process group the environment describes."""
    from detection.launch import run_from_env

    args = parse_args(["--config-file", config_file, *(["--resume"] if resume else []), *opts])
    return run_from_env(main, (args,))


def cli(argv=None):
    args = parse_args(argv)
    # The output folder rule, before any process starts (setup applies it again in the run).
    prepare_detection_output(load_detection_cfg(args.config_file, args.opts), args)
    if not torch.cuda.is_available():
        # --num-gpus N on a machine without GPUs: N CPU processes through gloo.
        return launch_cpu(main, args.num_gpus, args=(args,))
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


def entry_point() -> None:
    run_entry_point(cli)


if __name__ == "__main__":
    entry_point()
