"""detection/train_net.py's start and end lines (pretrain/common/run_lines.py), from the trainer
and its results."""

from __future__ import annotations

import logging

from pretrain.common.run_lines import detection_end_line, start_line

from .output_folder import last_checkpoint


def train_images(data_loader) -> int | None:
    """How many images the training loader samples from (after Detectron2 dropped those without
    annotations): the size its TrainingSampler was built for, found under the loader's wrappers."""
    node = data_loader
    for _ in range(6):
        size = getattr(getattr(node, "sampler", None), "_size", None)
        if isinstance(size, int):
            return size
        node = getattr(node, "dataset", None)
        if node is None:
            break
    return None


def log_start(cfg, trainer, resume: bool, folder_state: str) -> str:
    from detectron2.utils import comm

    if trainer.start_iter:
        state = f"resumed from {last_checkpoint(cfg.OUTPUT_DIR) or 'its last checkpoint'}"
    elif resume and folder_state == "resume":
        state = "--resume found no checkpoint: starting at iteration 0 from MODEL.WEIGHTS"
    else:
        state = folder_state
    images = train_images(trainer._trainer.data_loader)
    line = start_line(
        "detection",
        images if images is not None else "?",
        "DATASETS.TRAIN " + ", ".join(cfg.DATASETS.TRAIN),
        cfg.MODEL.DEVICE,
        comm.get_world_size(),
        cfg.SOLVER.IMS_PER_BATCH,
        cfg.SOLVER.BASE_LR,
        cfg.SOLVER.MAX_ITER,
        cfg.OUTPUT_DIR,
        state,
        trainer.start_iter,
    )
    logging.getLogger("detectron2").info(line)
    return line


def headline(results) -> str:
    """'bccd_test bbox AP 43.21' from {dataset: {task: {metric: value}}}, or ''."""
    for dataset, tasks in (results or {}).items():
        for task, metrics in tasks.items():
            if isinstance(metrics, dict) and metrics.get("AP") is not None:
                return f"{dataset} {task} AP {metrics['AP']:.2f}"
    return ""


def log_end(cfg, results, metrics_file: str, trained: bool) -> str:
    if results and len(cfg.DATASETS.TEST) == 1 and cfg.DATASETS.TEST[0] not in results:
        results = {cfg.DATASETS.TEST[0]: results}  # Detectron2 unwraps a single dataset's
    line = detection_end_line(
        cfg.OUTPUT_DIR, metrics_file if results else None, headline(results), trained
    )
    logging.getLogger("detectron2").info(line)
    return line
