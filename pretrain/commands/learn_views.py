"""Learn InfoMin views (Sec. 4.2): train a pixel-wise invertible flow g against an I_NCE
approximator, optionally with classifier terms on a labelled folder, and save the frozen g.

    python tools/learn_views.py --images cifar10/train --limit 10000 --size 32 \
        --labelled cifar10/train --labelled-limit 500 --held-out cifar10/test \
        --kind vp --steps 600 --warmup 100 --output-dir output/learned_views/vp

Writes OUTPUT_DIR/generator.pth (load with pretrain.views_learned.LearnedViews.from_file) and
resumable checkpoints; rerunning the same command resumes. On SLURM, the same arguments after `--`:

    python slurm/submit.py learn_views --timeout-min 60 -- --images cifar10/train ... \
        --output-dir output/learned_views/vp
"""

import argparse
import json
import os

import torch

from pretrain.views_learned import (
    ImageBank,
    LearnerSettings,
    NCEApproximator,
    PixelFlow,
    Schedule,
    ViewLearner,
    probe_i_nce,
    save_generator,
    train_views,
)
from pretrain.common.cli import run_entry_point
from pretrain.common.errors import ConfigError, UserError


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", required=True, help="unlabelled image folder (or .txt list)")
    p.add_argument("--limit", type=int, default=0, help="a fixed random subset of this many images")
    p.add_argument("--labelled", default="", help="class folders for the semi-supervised terms")
    p.add_argument("--labelled-limit", type=int, default=0)
    p.add_argument("--held-out", default="", help="class folders: held-out I_NCE and accuracy")
    p.add_argument("--held-out-count", type=int, default=512)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--kind", choices=("vp", "nvp"), default="vp")
    p.add_argument("--blocks", type=int, default=6)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--split", type=int, default=1, help="view 1 = the first SPLIT channels of g(x)")
    p.add_argument("--width", type=int, default=32, help="approximator encoder width")
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument(
        "--warmup", type=int, default=100, help="first steps train only f (and c), on the initial g"
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--labelled-batch-size", type=int, default=64)
    p.add_argument("--lr-generator", type=float, default=2e-4)
    p.add_argument("--lr-approximator", type=float, default=6e-4)
    p.add_argument(
        "--lr-classifier",
        type=float,
        default=3e-3,
        help="not in the paper; at 6e-4 the classifiers fell behind the generator "
        "(docs/results/learned_views_2026-12.md)",
    )
    p.add_argument("--classifier-weight", type=float, default=1.0)
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument(
        "--probe-steps",
        type=int,
        default=0,
        help="also measure held-out I_NCE of g at start and end with a fresh "
        "approximator trained this many steps on the frozen views",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", required=True)
    return p.parse_args(argv)


def arguments_from(config_file: str, arguments: list[str]) -> argparse.Namespace:
    """The learn_views stage's config (pretrain/stages.py): this tool's arguments (after `--`)."""
    if config_file:
        raise ConfigError(
            f"learn_views takes no config file ({config_file}): give this tool's arguments after --"
        )
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    try:
        return parse_args(arguments)
    except SystemExit:  # argparse printed the problem and the usage
        raise ConfigError(
            f"learn_views arguments {' '.join(arguments)!r}: see tools/learn_views.py --help"
        ) from None


def describe(args: argparse.Namespace) -> str:
    return json.dumps(vars(args), indent=1)


def input_paths(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(argument, path) of each folder the stage reads (slurm/request_checks.py)."""
    return [
        (f"--{name.replace('_', '-')}", getattr(args, name))
        for name in ("images", "labelled", "held_out")
        if getattr(args, name)
    ]


def run_stage(args: argparse.Namespace, resume: bool = True) -> str | None:
    """The stage: learns (resuming from OUTPUT_DIR's checkpoint, as every rerun does); the saved
    generator's path, or None when a scheduler's signal stopped it (submitit requeues it)."""
    return learn_views(args)


def main(argv=None) -> int:
    learn_views(parse_args(argv))
    return 0


def learn_views(args: argparse.Namespace) -> str | None:
    torch.manual_seed(args.seed)
    try:
        images = ImageBank.from_folder(args.images, args.size, args.limit, args.seed)
        labelled = (
            ImageBank.from_folder(
                args.labelled, args.size, args.labelled_limit, args.seed, labelled=True
            )
            if args.labelled
            else None
        )
        held = (
            ImageBank.from_folder(
                args.held_out, args.size, args.held_out_count, args.seed, labelled=True
            )
            if args.held_out
            else None
        )
        generator = PixelFlow(args.kind, args.blocks, args.hidden)
        approximator = NCEApproximator(
            args.split, generator.channels, args.width, temperature=args.temperature
        )
    except ValueError as err:  # images, labels or settings the learner cannot use
        if isinstance(err, UserError):
            raise
        raise ConfigError(str(err)) from None
    num_classes = int(labelled.labels.max()) + 1 if labelled is not None else 0
    settings = LearnerSettings(
        args.lr_generator,
        args.lr_approximator,
        args.lr_classifier,
        classifier_weight=args.classifier_weight,
    )
    learner = ViewLearner(generator, approximator, args.split, num_classes, settings)
    held_out = None
    if held is not None:
        x, y = held.head(len(held))
        held_out = (x, x, y) if labelled is not None else (x,)
    probes = _probe(learner, images, held_out, args, "start") if held_out is not None else {}
    schedule = Schedule(
        args.steps,
        args.batch_size,
        args.labelled_batch_size,
        args.warmup,
        args.save_every,
        args.eval_every,
        args.seed,
    )
    history = train_views(
        learner,
        images,
        schedule,
        args.output_dir,
        labelled,
        held_out,
        log=lambda line: print(line, flush=True),
    )
    if history is None:
        return None  # a scheduler's signal: checkpointed, requeued
    if held_out is not None:
        probes.update(_probe(learner, images, held_out, args, "end"))
    save_generator(
        os.path.join(args.output_dir, "generator.pth"),
        generator,
        args.split,
        {"args": vars(args), "history": history, "probes": probes},
    )
    with open(os.path.join(args.output_dir, "history.json"), "w") as f:
        json.dump({"history": history, "probes": probes}, f, indent=1)
    path = os.path.join(args.output_dir, "generator.pth")
    print(f"saved {path}")
    return path


def _probe(learner, images, held_out, args, when: str) -> dict:
    """Probe g's held-out I_NCE. The start probe runs before any resume, on the freshly built g
    (the identity), and is kept in OUTPUT_DIR so a resumed run does not spend it again."""
    if args.probe_steps <= 0:
        return {}
    path = os.path.join(args.output_dir, f"probe_{when}.json")
    if when == "start" and os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    result = {
        when: probe_i_nce(
            learner, images, held_out[0], args.probe_steps, args.batch_size, args.seed
        )
    }
    print(
        f"probe ({args.probe_steps} steps of a fresh approximator) at {when}: {result[when]}",
        flush=True,
    )
    os.makedirs(args.output_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f)
    return result


def entry_point() -> None:
    run_entry_point(main)


if __name__ == "__main__":
    entry_point()
