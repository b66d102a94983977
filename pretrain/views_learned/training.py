"""View learning on the project's training loop (engine/loop.py): resumable from OUTPUT_DIR's
last checkpoint (written atomically by engine.checkpoint), requeued on SLURM like every stage,
with a warm-up in which only f1, f2 (and c1, c2) learn on the initial g, so the first I_NCE and
accuracies reported measure g at its start, not untrained estimators."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import torch

from ..engine.loop import Hook, TrainLoop, every
from ..engine.checkpoint import (
    last_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .bank import ImageBank
from .learner import ViewLearner


@dataclass
class Schedule:
    steps: int
    batch_size: int = 128
    labelled_batch_size: int = 64
    warmup_steps: int = 0
    save_every: int = 100
    eval_every: int = 50
    seed: int = 0


def train_views(
    learner: ViewLearner,
    images: ImageBank,
    schedule: Schedule,
    output_dir: str,
    labelled: ImageBank | None = None,
    held_out: tuple | None = None,
    log: Callable[[str], None] = print,
) -> list[dict] | None:
    """Run (or resume) the min-max for schedule.steps steps on the project's training loop
    (engine/loop.py); returns the evaluations made on `held_out` = (images, labelled images,
    labels) every eval_every steps and at the end, or None when a scheduler's signal stopped it
    (checkpointed; submitit requeues the job)."""
    os.makedirs(output_dir, exist_ok=True)
    start, history = 0, []
    resume = last_checkpoint(output_dir)
    if resume:
        state = load_checkpoint(resume)
        learner.load_full_state(state["learner"])
        set_rng_state(state["rng"])
        start, history = state["step"], state["history"]
        log(f"resumed from {resume} at step {start}")

    def step(index: int, _iteration: int) -> None:
        x, _ = images.batch(index, schedule.batch_size, schedule.seed)
        xl = yl = None
        if labelled is not None:
            xl, yl = labelled.batch(index, schedule.labelled_batch_size, schedule.seed + 1)
        learner.approximator_step(x)
        learner.generator_step(x, xl, yl, update_generator=index >= schedule.warmup_steps)

    def checkpoint(done: int) -> None:
        save_checkpoint(
            output_dir,
            f"checkpoint_{done:07d}.pth",
            {"learner": learner.full_state(), "rng": rng_state(), "step": done, "history": history},
        )

    hooks = (
        [] if held_out is None else [HeldOutEvaluation(learner, held_out, schedule, history, log)]
    )
    loop = TrainLoop(step, checkpoint, start, schedule.steps, every(schedule.save_every), hooks)
    if not loop.run(range(start, schedule.steps)):
        return None
    if start < schedule.steps:
        checkpoint(schedule.steps)
    if held_out is not None and (not history or history[-1]["step"] != schedule.steps):
        history.append(_evaluate(learner, held_out, schedule.steps, log))
    return history


class HeldOutEvaluation(Hook):
    """Held-out I_NCE and accuracies before every eval_every-th step once g learns (after the
    warm-up), appended to the run's history (which each checkpoint holds)."""

    def __init__(self, learner, held_out, schedule: Schedule, history: list, log):
        self.learner, self.held_out, self.schedule = learner, held_out, schedule
        self.history, self.log = history, log

    def before_step(self, loop) -> None:
        index = loop.iteration
        if index % self.schedule.eval_every == 0 and index >= self.schedule.warmup_steps:
            self.history.append(_evaluate(self.learner, self.held_out, index, self.log))


def _evaluate(learner: ViewLearner, held_out: tuple, step: int, log) -> dict:
    result = {"step": step, **learner.evaluate(*held_out)}
    log(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    return result


def probe_i_nce(
    learner: ViewLearner,
    images: ImageBank,
    held_out: torch.Tensor,
    steps: int,
    batch_size: int,
    seed: int,
) -> dict:
    """I_NCE of the learner's current g measured by a *fresh* approximator (initialised from
    `seed`) trained `steps` steps on g's frozen views: the same probe for g at its start and at its
    end compares the views, not how long the adversary has been learning."""
    torch.manual_seed(seed)
    old = learner.approximator
    fresh = type(old)(
        learner.split, learner.generator.channels, old.width, old.embed_dim, old.temperature
    )
    probe = ViewLearner(learner.generator, fresh, learner.split, settings=learner.settings)
    for step in range(steps):
        probe.approximator_step(images.batch(step, batch_size, seed)[0])
    return probe.evaluate(held_out)
