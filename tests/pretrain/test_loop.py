"""The one training loop (pretrain/engine/loop.py): the order of steps, hooks and checkpoints, and
a scheduler's signal turned into a checkpoint at the step boundary before the installed handler
runs. The signal is real (os.kill); the handler stands in for submitit's and records the call."""

import os
import signal

import pytest

from pretrain.engine.loop import Hook, TrainLoop, every


class Recorder(Hook):
    def __init__(self, events):
        self.events = events

    def before_step(self, loop):
        self.events.append(("before", loop.iteration))

    def after_step(self, loop):
        self.events.append(("after", loop.iteration, loop.output))

    def after_train(self, loop):
        self.events.append(("end", loop.iteration, loop.stopped))


def test_steps_hooks_and_periodic_checkpoints_run_in_order_and_never_after_the_last_step():
    events = []
    loop = TrainLoop(
        lambda batch, it: batch * 10,
        lambda done: events.append(("save", done)),
        start_iter=2,
        max_iter=6,
        checkpoint_due=every(2),
        hooks=[Recorder(events)],
    )
    assert loop.run(iter(range(100))) is True  # takes only the 4 batches still due
    assert events == [
        ("before", 2),
        ("after", 3, 0),
        ("before", 3),
        ("after", 4, 10),
        ("save", 4),
        ("before", 4),
        ("after", 5, 20),
        ("before", 5),
        ("after", 6, 30),
        ("end", 6, False),
    ]


def test_a_finished_run_steps_nothing():
    events = []
    loop = TrainLoop(
        lambda batch, it: pytest.fail("stepped"), events.append, 6, 6, every(1), [Recorder(events)]
    )
    assert loop.run(iter(range(100))) is True and events == [("end", 6, False)]


def test_no_period_means_no_periodic_checkpoint():
    assert not any(every(0)(i) for i in range(1, 10))
    assert [i for i in range(1, 10) if every(4)(i)] == [4, 8]


def test_a_schedulers_signal_checkpoints_at_the_step_boundary_then_hands_over():
    events = []

    def requeue(signum, frame):  # submitit's handler requeues and exits; this one records
        events.append(("handler", signum))

    def step(batch, iteration):
        if iteration == 2:  # the signal arrives in the middle of the third step
            os.kill(os.getpid(), signal.SIGUSR2)
            events.append(("step 3 went on",))
        return batch

    previous = signal.signal(signal.SIGUSR2, requeue)
    try:
        loop = TrainLoop(
            step, lambda done: events.append(("save", done)), 0, 100, every(50), [Recorder(events)]
        )
        assert loop.run(iter(range(100))) is False
        assert signal.getsignal(signal.SIGUSR2) is requeue  # handed back to the handler
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert events[-6:] == [
        ("before", 2),
        ("step 3 went on",),
        ("after", 3, 2),
        ("save", 3),
        ("end", 3, True),
        ("handler", signal.SIGUSR2),
    ]
    assert loop.stopped and loop.iteration == 3


def test_without_a_handler_the_signal_does_not_stop_the_run():
    """Outside a scheduler nobody requeues: the loop does not defer a signal it cannot hand on
    (the default action of USR2 would end the process, so this installs SIG_IGN)."""
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:

        def step(batch, iteration):
            os.kill(os.getpid(), signal.SIGUSR2)
            return batch

        loop = TrainLoop(step, lambda done: None, 0, 5, every(0))
        assert loop.run(iter(range(5))) is True and loop.iteration == 5
    finally:
        signal.signal(signal.SIGUSR2, previous)
