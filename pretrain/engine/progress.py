"""Progress of a training run: the ETA every loop prints, and pretraining's report: averages over
the last LOG_PERIOD iterations, printed (loss, contrastive accuracy, I_NCE where the method has
negatives, I_ER for every method, lr, img/s, data time, ETA) and written by global rank 0, with
the loss's named terms (loss/<term>) and the ER monitor's (er/entropy, er/reconstruction), as
JSON lines and TensorBoard scalars."""

from __future__ import annotations

import math
import time

from ..losses import mutual_information_bound
from ..common import distributed as du
from .loop import Hook
from .metrics import METRICS_FILE, MetricsLog, read_metrics  # noqa: F401 (their old home)


class Eta:
    """Time left of a run, from its pace since this (re)start: `start_step` steps were done
    before it, `total` is the last step."""

    def __init__(self, start_step: int, total: int):
        self.start_step, self.total = start_step, total
        self.started = time.perf_counter()

    def minutes(self, step: int) -> float:
        done = max(1, step - self.start_step)
        return (time.perf_counter() - self.started) / done * (self.total - step) / 60


class LossLine(Hook):
    """The progress of a classifier's loop (supervised baseline, linear readout) as a loop hook:
    every `period` steps and at the last, the mean loss of the steps since the previous line, the
    lr the last step used, img/s and the ETA, printed and logged. The step returns
    (loss, images). The running sums go into each checkpoint (`window()`), so a run resumed
    between two lines prints the line the uninterrupted run printed."""

    def __init__(
        self,
        log: MetricsLog,
        period: int,
        scheduler,
        total: int,
        start_step: int,
        window: dict | None = None,
    ):
        self.log, self.period, self.scheduler, self.total = log, period, scheduler, total
        self.eta = Eta(start_step, total)
        self._reset()
        if window:
            self.seen, self.loss_sum = window["seen"], window["loss_sum"]

    def window(self) -> dict:
        return {"seen": self.seen, "loss_sum": self.loss_sum}

    def _reset(self) -> None:
        self.began, self.seen, self.loss_sum = time.perf_counter(), 0, 0.0

    def before_step(self, loop) -> None:
        self.lr = self.scheduler.get_last_lr()[0]

    def after_step(self, loop) -> None:
        loss, images = loop.output
        self.seen += images
        self.loss_sum += loss * images
        if loop.iteration % self.period and loop.iteration != self.total:
            return
        record = {
            "loss": self.loss_sum / self.seen,
            "lr": self.lr,
            "img_per_s": self.seen / (time.perf_counter() - self.began),
        }
        self.log.write(loop.iteration, record)
        print(
            f"iter {loop.iteration}/{self.total} loss {record['loss']:.4f} lr {self.lr:.4g} "
            f"{record['img_per_s']:.0f} img/s eta {self.eta.minutes(loop.iteration):.1f} min",
            flush=True,
        )
        self._reset()


class Progress:
    def __init__(
        self,
        output_dir: str,
        batch_size: int,
        num_negatives: int,
        info_nce_terms: tuple[str, ...],
        start_iter: int,
        total_iters: int,
        er_kappa: float = 10.0,
    ):
        """`info_nce_terms`: the method's terms that are InfoNCE losses against `num_negatives`
        negatives (models/method.py); I_NCE = log(K + 1) - their mean, only where there are.
        `er_kappa`: the vMF concentration of the entropy and reconstruction monitor."""
        self.log = MetricsLog(output_dir, "pretrain", resumed_at=start_iter if start_iter else None)
        self.batch_size, self.num_negatives = batch_size, num_negatives
        self.info_nce_terms = tuple(info_nce_terms)
        self.total_iters = total_iters
        self.er_kappa = er_kappa
        self.eta = Eta(start_iter, total_iters)
        self.skipped_images = 0
        self.explained = False  # the I_NCE legend is printed once, before the first line
        self._reset(time.perf_counter())

    def _reset(self, now: float) -> None:
        self.loss = self.acc = self.data_time = 0.0
        self.terms: dict[str, float] = {}
        self.er_sums = [0.0, 0.0]  # entropy, reconstruction
        self.er_count = 0
        self.count = 0
        self.window_start = now

    def add(self, out, data_time: float, skipped: int) -> None:
        """One step's StepOutput (models/method.py)."""
        self.loss += out.loss.item()
        self.acc += (out.logits.argmax(dim=1) == 0).float().mean().item()
        for name, value in out.terms.items():
            self.terms[name] = self.terms.get(name, 0.0) + float(value)
        if out.er is not None:
            for i, value in enumerate(out.er.measure(self.er_kappa)):
                self.er_sums[i] += value
            self.er_count += 1
        self.data_time += data_time
        self.count += 1
        self.skipped_images += skipped

    def report(self, iteration: int, epoch: int, lr: float, device) -> None:
        """Collective: every process calls it at the same iterations."""
        now, n = time.perf_counter(), max(1, self.count)
        loss = du.all_reduce_mean(self.loss / n, device)
        metrics = {"epoch": epoch, "loss": loss, "acc": du.all_reduce_mean(self.acc / n, device)}
        terms = {
            name: du.all_reduce_mean(total / n, device)
            for name, total in sorted(self.terms.items())
        }
        metrics.update({f"loss/{name}": value for name, value in terms.items()})
        info_nce = ""
        if self.info_nce_terms:  # per InfoNCE term (CMC and MoCo v3 have one per direction)
            mean = sum(terms[name] for name in self.info_nce_terms) / len(self.info_nce_terms)
            metrics["I_NCE"] = mutual_information_bound(mean, self.num_negatives)
            info_nce = f"I_NCE {metrics['I_NCE']:.3f} "
        er = ""
        if self.er_count:  # every method's step shows its pair; a process's batch
            entropy, rec = (
                du.all_reduce_mean(total / self.er_count, device) for total in self.er_sums
            )
            metrics.update({"er/entropy": entropy, "er/reconstruction": rec, "I_ER": entropy - rec})
            er = f"I_ER {entropy - rec:.3f} (H {entropy:.2f}) "
        if not self.explained and du.is_main_process():
            if self.info_nce_terms:
                print(
                    f"I_NCE = log(K + 1) - the InfoNCE loss, K = {self.num_negatives} "
                    "negatives: the InfoNCE lower bound on the views' mutual information, in "
                    f"nats (at most log(K + 1) = {math.log(self.num_negatives + 1):.3f}; below "
                    "0 while the loss is above chance's, as early in a run)",
                    flush=True,
                )
            if er:
                print(
                    "I_ER = H - Rec: the entropy-reconstruction lower bound on the views' "
                    "mutual information (Rodriguez-Galvez et al. 2023), in nats, over each "
                    f"process's batch (vMF kernel kappa {self.er_kappa:g} on the sphere, or "
                    "discrete); H is the entropy of the reconstructed side; below 0 while the "
                    "reconstruction is poor, as early in a run",
                    flush=True,
                )
        self.explained = True
        metrics.update(
            {
                "lr": lr,
                "img_per_s": n * self.batch_size / (now - self.window_start),
                "data_time": self.data_time / n,
                "skipped_images": self.skipped_images,
            }
        )
        self.log.write(iteration, metrics)
        if du.is_main_process():
            print(
                f"iter {iteration}/{self.total_iters} epoch {epoch} loss {loss:.4f} "
                f"acc {metrics['acc']:.3f} {info_nce}{er}lr {lr:.4g} "
                f"{metrics['img_per_s']:.1f} img/s data {metrics['data_time']:.3f}s "
                f"eta {self.eta.minutes(iteration):.1f} min",
                flush=True,
            )
        self._reset(now)

    def close(self) -> None:
        self.log.close()
        if self.skipped_images and du.is_main_process():
            print(
                f"warning: {self.skipped_images} unreadable images were skipped "
                "(see the warnings above)"
            )
