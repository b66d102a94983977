"""The two lines every training stage prints: at the start what it found and will do (images,
device, effective batch and lr, output folder), at the end what it wrote and the next command.
Kept in one place so that pretraining and detection say them the same way."""

from __future__ import annotations

import os


def start_line(
    stage: str,
    images: int,
    source: str,
    device: str,
    processes: int,
    batch: int,
    lr: float,
    iterations: int,
    output_dir: str,
    folder_state: str = "",
    start_iter: int = 0,
) -> str:
    """'pretrain: 50000 images (DATA.ROOT /data/train), cuda x 8 processes, batch 256 (32 per
    process), lr 0.03, 78000 iterations, output output/run (fresh)'."""
    per_process = f" ({batch // processes} per process)" if processes > 1 else ""
    plural = "es" if processes > 1 else ""
    span = (
        f"iterations {start_iter}-{iterations}"
        if start_iter
        else f"{iterations} iteration{'s' if iterations != 1 else ''}"
    )
    state = f" ({folder_state})" if folder_state else ""
    return (
        f"{stage}: {images} images ({source}), {device} x {processes} process{plural}, "
        f"batch {batch}{per_process}, lr {lr:g}, {span}, output {output_dir}{state}"
    )


def pretrain_start_line(
    cfg, samples: int, device: str, processes: int, total_iters: int, start_iter: int, lr: float
) -> str:
    """start_line for tools/pretrain.py's config; lr: SOLVER.BASE_LR as the trainer scaled it to
    the batch (pretraining.py scaled_lr, the one place that rule lives)."""
    return start_line(
        "pretrain",
        samples,
        f"DATA.ROOT {cfg.DATA.ROOT}",
        device,
        processes,
        cfg.SOLVER.BATCH_SIZE,
        lr,
        total_iters,
        cfg.OUTPUT_DIR,
        start_iter=start_iter,
    )


def end_line(written: list[str], next_step: str) -> str:
    """'wrote A, B; next: COMMAND'."""
    return f"wrote {', '.join(written)}; next: {next_step}"


def pretrain_end_line(final_checkpoint: str, convertible: bool = True) -> str:
    """After pretraining: the checkpoint, and the conversion that makes it Detectron2 weights
    (or, for a model that does not convert, such as CMC's colour-space encoders, its readout)."""
    if not convertible:
        return end_line(
            [final_checkpoint],
            "read it out with tools/sweep.py (kNN over every view's encoder); its "
            "encoders read colour-space channels, so it does not convert to "
            "Detectron2",
        )
    backbone = os.path.join(os.path.dirname(final_checkpoint), "backbone_d2.pkl")
    return end_line(
        [final_checkpoint],
        f"python tools/convert.py {final_checkpoint} {backbone} "
        "(then MODEL.WEIGHTS of that .pkl in a configs/detection config)",
    )


def detection_end_line(
    output_dir: str, metrics_file: str | None, headline: str = "", trained: bool = True
) -> str:
    """After fine-tuning (or an evaluation, `trained` False): the model and its metrics (None:
    no evaluation ran), and how to tabulate runs."""
    written = [os.path.join(output_dir, "model_final.pth")] if trained else []
    if metrics_file:
        written.append(
            os.path.join(output_dir, metrics_file) + (f" ({headline})" if headline else "")
        )
    return end_line(
        written,
        f"python detection/compare.py --run LABEL={output_dir} [--run ...] to tabulate runs",
    )
