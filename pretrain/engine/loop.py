"""The project's one training loop. Pretraining, the supervised baseline, the linear readout and
view learning all step through it, so each writes its checkpoints at the same points, survives a
scheduler's "time is up" signal the same way (a checkpoint at the step boundary, then submitit's
handler requeues the job) and resumes exactly from what it wrote.

What differs between the stages is passed in: the step (one optimisation step on one batch), the
checkpoint writer (what a checkpoint holds), when a periodic checkpoint is due, and hooks in the
manner of Detectron2's HookBase for everything around the step (progress lines, metrics, the
periodic kNN monitor, a per-epoch evaluation). The final checkpoint is the caller's: each stage
writes its own kind of final file."""

from __future__ import annotations

import itertools
import time
from typing import Any, Callable, Iterable, Sequence

from ..common.preemption import CheckpointBeforeRequeue


class Hook:
    """Code the loop runs around each step. `loop.iteration` is the number of steps done: in
    before_step, the index of the step about to run; in after_step, the steps done including it.
    after_train runs once at the end, also when a signal stopped the run (`loop.stopped`), just
    before the signal is handed on: the place to close files."""

    def before_step(self, loop: "TrainLoop") -> None:
        pass

    def after_step(self, loop: "TrainLoop") -> None:
        pass

    def after_train(self, loop: "TrainLoop") -> None:
        pass


class TrainLoop:
    def __init__(
        self,
        step: Callable[[Any, int], Any],
        save: Callable[[int], None],
        start_iter: int,
        max_iter: int,
        checkpoint_due: Callable[[int], bool],
        hooks: Sequence[Hook] = (),
        device: str = "cpu",
    ):
        """`step(batch, iteration)` runs one step and returns what hooks read as `loop.output`;
        `save(iterations_done)` writes a checkpoint; `checkpoint_due(iterations_done)` says
        whether a periodic one is due. Both are never called after the last step."""
        self.step, self.save = step, save
        self.start_iter, self.max_iter = start_iter, max_iter
        self.checkpoint_due = checkpoint_due
        self.hooks = list(hooks)
        self.device = device
        self.iteration = start_iter
        self.output: Any = None
        self.data_time = 0.0  # seconds the step waited for its batch
        self.stopped = False  # a scheduler's signal ended the run before its last step

    def run(self, batches: Iterable) -> bool:
        """Steps through `batches` (the batches still due from start_iter on) up to max_iter.
        True: the run reached its last step. False: a scheduler's signal stopped it; a checkpoint
        was written, then the signal was handed to the handler installed before (submitit's,
        which requeues the job and exits)."""
        self.iteration, self.stopped = self.start_iter, False
        with CheckpointBeforeRequeue() as preemption:
            fetch_start = time.perf_counter()
            for batch in itertools.islice(batches, max(0, self.max_iter - self.start_iter)):
                self.data_time = time.perf_counter() - fetch_start
                for hook in self.hooks:
                    hook.before_step(self)
                self.output = self.step(batch, self.iteration)
                self.iteration += 1
                for hook in self.hooks:
                    hook.after_step(self)
                if self.iteration >= self.max_iter:
                    break
                stop = preemption.requested(self.device)  # collective: all processes agree
                if stop or self.checkpoint_due(self.iteration):
                    self.save(self.iteration)
                if stop:
                    self.stopped = True
                    self._after_train()
                    preemption.hand_over()
                    return False
                fetch_start = time.perf_counter()
        self._after_train()
        return True

    def _after_train(self) -> None:
        for hook in self.hooks:
            hook.after_train(self)


def classifier_step(model, optimizer, scheduler, device: str) -> Callable[[Any, int], tuple]:
    """The step of a classifier trained end to end (supervised baseline, fine-tuning): cross-
    entropy on a seeded_batches (epoch, (images, labels)) item, one optimizer and scheduler step;
    returns (loss, images) for LossLine."""
    import torch.nn.functional as F

    def step(epoch_batch, _iteration: int) -> tuple[float, int]:
        _, (images, labels) = epoch_batch
        model.train()  # batch norm too: the whole network trains
        loss = F.cross_entropy(model(images.to(device, non_blocking=True)), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        return loss.item(), len(labels)

    return step


def every(period: int) -> Callable[[int], bool]:
    """checkpoint_due for a period in steps (0: never)."""
    return lambda iteration: period > 0 and iteration % period == 0
