"""The metric writer of every training loop (pretraining, supervised baseline, linear readout):
JSON lines in OUTPUT_DIR/metrics.jsonl and TensorBoard scalars, written by global rank 0 only.
A resumed run first drops the rows past its checkpoint, so no step is logged twice."""

from __future__ import annotations

import json
import os

from ..common import distributed as du
from .checkpoint import atomic_write_text

METRICS_FILE = "metrics.jsonl"  # in OUTPUT_DIR: one JSON object per line, each with its step


def read_metrics(output_dir: str) -> list[dict]:
    """Every row a run (pretraining or linear readout) wrote to its metrics file, in order."""
    with open(os.path.join(output_dir, METRICS_FILE)) as f:
        return [json.loads(line) for line in f if line.strip()]


def drop_rows_after(output_dir: str, step_key: str, step: int) -> int:
    """Keep the rows of metrics.jsonl up to `step` (rows without `step_key` stay); returns how
    many were dropped. Rows past a checkpoint come from the part of a run a resume repeats."""
    path = os.path.join(output_dir, METRICS_FILE)
    if not os.path.isfile(path):
        return 0
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    kept = [line for line in lines if json.loads(line).get(step_key, step) <= step]
    if len(kept) < len(lines):
        atomic_write_text("".join(kept), path)
    return len(lines) - len(kept)


class MetricsLog:
    """Rows of {step_key: step, **metrics} as JSON lines, and the same numbers as TensorBoard
    scalars named `tag/<metric>`. `resumed_at`: the step a resumed run starts from; TensorBoard
    then hides the events the first run wrote after it."""

    def __init__(
        self, output_dir: str, tag: str, step_key: str = "iteration", resumed_at: int | None = None
    ):
        self.enabled = du.is_main_process()
        self.tag, self.step_key = tag, step_key
        if not self.enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.jsonl = open(os.path.join(output_dir, METRICS_FILE), "a")
        self.tensorboard = SummaryWriter(
            os.path.join(output_dir, "tensorboard"),
            purge_step=None if resumed_at is None else resumed_at + 1,
        )

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({self.step_key: step, **metrics}) + "\n")
        self.jsonl.flush()
        for name, value in metrics.items():
            self.tensorboard.add_scalar(f"{self.tag}/{name}", value, step)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tensorboard.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
