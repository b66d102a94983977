"""Progress of a pretraining run: averages over the last LOG_PERIOD iterations, printed (loss,
contrastive accuracy, I_NCE, lr, img/s, data time, ETA) and written by global rank 0 as JSON lines
and TensorBoard scalars."""
from __future__ import annotations

import json
import os
import time

from ..losses import mutual_information_bound
from ..common import distributed as du

METRICS_FILE = "metrics.jsonl"  # in OUTPUT_DIR: one JSON object per line, each with "iteration"


def read_metrics(output_dir: str) -> list[dict]:
    """Every row a run (pretraining or linear readout) wrote to its metrics file, in order."""
    with open(os.path.join(output_dir, METRICS_FILE)) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricsLog:
    """JSON lines and TensorBoard scalars, written by global rank 0 only."""

    def __init__(self, output_dir: str):
        self.enabled = du.is_main_process()
        if not self.enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.jsonl = open(os.path.join(output_dir, METRICS_FILE), "a")
        self.tensorboard = SummaryWriter(os.path.join(output_dir, "tensorboard"))

    def write(self, iteration: int, metrics: dict) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"iteration": iteration, **metrics}) + "\n")
        self.jsonl.flush()
        for name, value in metrics.items():
            self.tensorboard.add_scalar(f"pretrain/{name}", value, iteration)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tensorboard.close()


class Progress:
    def __init__(self, output_dir: str, batch_size: int, num_negatives: int, start_iter: int,
                 total_iters: int):
        self.log = MetricsLog(output_dir)
        self.batch_size, self.num_negatives = batch_size, num_negatives
        self.start_iter, self.total_iters = start_iter, total_iters
        self.run_start = time.perf_counter()
        self.skipped_images = 0
        self._reset(self.run_start)

    def _reset(self, now: float) -> None:
        self.loss = self.acc = self.data_time = 0.0
        self.count = 0
        self.window_start = now

    def add(self, loss: float, acc: float, data_time: float, skipped: int) -> None:
        self.loss += loss
        self.acc += acc
        self.data_time += data_time
        self.count += 1
        self.skipped_images += skipped

    def report(self, iteration: int, epoch: int, lr: float, device) -> None:
        """Collective: every process calls it at the same iterations."""
        now, n = time.perf_counter(), max(1, self.count)
        loss = du.all_reduce_mean(self.loss / n, device)
        metrics = {"epoch": epoch, "loss": loss, "acc": du.all_reduce_mean(self.acc / n, device),
                   "I_NCE": mutual_information_bound(loss, self.num_negatives), "lr": lr,
                   "img_per_s": n * self.batch_size / (now - self.window_start),
                   "data_time": self.data_time / n, "skipped_images": self.skipped_images}
        self.log.write(iteration, metrics)
        if du.is_main_process():
            done = max(1, iteration - self.start_iter)
            eta = (now - self.run_start) / done * (self.total_iters - iteration)
            print(f"iter {iteration}/{self.total_iters} epoch {epoch} loss {loss:.4f} "
                  f"acc {metrics['acc']:.3f} I_NCE {metrics['I_NCE']:.3f} lr {lr:.4g} "
                  f"{metrics['img_per_s']:.1f} img/s data {metrics['data_time']:.3f}s "
                  f"eta {eta / 60:.1f} min", flush=True)
        self._reset(now)

    def close(self) -> None:
        self.log.close()
        if self.skipped_images and du.is_main_process():
            print(f"warning: {self.skipped_images} unreadable images were skipped "
                  "(see the warnings above)")
