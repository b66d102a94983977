"""Sweep pretraining over a grid of config keys and plot readout accuracy against the information
the views share (I_NCE on held-out images): InfoMin's reverse U (Tian et al. 2020, Fig. 5).

    python tools/sweep.py --config-file configs/pretrain/mocov2_R50_200ep.yaml --output DIR \\
        --heldout HELDOUT_DIR \\
        --grid DATA.CROP_SCALE "(0.08,1.0)" "(0.2,1.0)" "(0.6,1.0)" \\
        --grid MODEL.TEMPERATURE 0.1 0.2 \\
        [--seeds 0 1 2] [--set KEY VALUE ...] [--readout knn|linear] \\
        [--linear-set KEY VALUE ...] [--heldout-bn eval|train] \\
        [--slurm [--gpus-per-node 1 --partition P --array-parallelism N --wait ...]] \\
        [--dry-run] [--collect]

--grid KEY V1 V2 ...: one axis, repeatable; the points are the cartesian product of the axes
(first axis slowest), each value in the config's override language (quote tuples). --set: fixed
KEY VALUE overrides for every point (after the config file, before the grid's). Each point runs
in DIR/<setting>/ (e.g. CROP_SCALE=0.08-1.0__TEMPERATURE=0.1): pretraining (resumed from its last
checkpoint), then I_NCE = log N - InfoNCE of two views of N held-out images (--heldout-n, rounded
down to whole SOLVER.BATCH_SIZE batches; at most log N), then the readout on EVAL.KNN_TRAIN_ROOT /
EVAL.KNN_TEST_ROOT (kNN with EVAL.KNN_*; or a linear classifier, configured by --linear-set with
tools/lincls.py's keys, e.g. SOLVER.EPOCHS 10). DIR/<setting>/result.json marks a finished point: a
rerun skips it. Random initialisation is measured as the point DIR/random_init, the baseline.
--seeds S1 S2 ...: every point (random init too) once per SEED, in DIR/<setting>/seed<S>/; the
report gives mean ± SD over seeds and marks a point above or below random init only where a paired
bootstrap over the seeds and the kNN's test images is significant (p < 0.05), with Spearman's rho
of I_NCE and accuracy across the settings and a test of the reverse U. I_NCE is measured with batch
norm in eval mode (a fixed critic; --heldout-bn train encodes with batch statistics instead).
Where the grid changes the views' data (DATA.ROOT over tools/view_world.py's worlds), --heldout
"{DATA.ROOT}/../heldout" measures each point on held-out views of its own world.
The table (DIR/results.md, .csv, .json) and plot (DIR/reverse_u.png) are written at the end, or
from whatever has finished with --collect.

Locally the points run one after the other. --slurm submits the unfinished points as one job
array, one task per point (1 node, 1 task, --gpus-per-node GPUs), requeued after a time-out or
preemption, which resumes the point; --wait waits and then writes the table, else rerun with
--collect when the array is done.
"""

import argparse
import contextlib
import datetime
import json
import os
import sys

from pretrain.common.cli import run_entry_point
from pretrain.common.errors import ConfigError, DatasetError
from pretrain.evaluation.mutual_info import HeldoutError
from pretrain.sweep import READOUTS, Sweep, SweepError, point_status, run_local, write_report
from slurm.submit import add_resource_arguments


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default="", metavar="FILE")
    parser.add_argument("--output", required=True, metavar="DIR", help="the sweep's folder")
    parser.add_argument(
        "--grid",
        action="append",
        nargs="+",
        default=[],
        metavar="KEY V",
        help="KEY V1 [V2 ...]: one axis of the grid (repeatable)",
    )
    parser.add_argument(
        "--set",
        action="append",
        nargs="+",
        default=[],
        metavar="KEY VALUE",
        help="KEY VALUE [KEY VALUE ...] overrides shared by every point",
    )
    parser.add_argument(
        "--heldout",
        required=True,
        metavar="DIR",
        help="images for I_NCE, not used in pretraining (any DATA.ROOT layout); "
        "{KEY} is replaced by each point's config value, e.g. "
        "\"{DATA.ROOT}/../heldout\" where the grid's points are worlds of views "
        "(tools/view_world.py)",
    )
    parser.add_argument("--heldout-n", type=int, default=512, help="held-out images (N)")
    parser.add_argument(
        "--heldout-bn",
        choices=("eval", "train"),
        default="eval",
        help="batch norm while measuring I_NCE (eval: a fixed critic)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[],
        metavar="S",
        help="run every point (random init too) once per seed",
    )
    parser.add_argument("--readout", choices=READOUTS, default="knn")
    parser.add_argument(
        "--linear-set",
        action="append",
        nargs="+",
        default=[],
        metavar="KEY VALUE",
        help="overrides of the linear readout's config",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would run; run nothing")
    parser.add_argument(
        "--collect",
        action="store_true",
        help="only write the table and plot from the finished points",
    )
    parser.add_argument("--slurm", action="store_true", help="submit the points as a job array")
    slurm = parser.add_argument_group("--slurm")
    add_resource_arguments(slurm)
    slurm.add_argument("--array-parallelism", type=int, default=64, help="points running at once")
    slurm.add_argument("--job-dir", default="", help="default: OUTPUT/slurm")
    slurm.add_argument(
        "--wait", action="store_true", help="wait for the array, then write the table and plot"
    )
    args = parser.parse_args(argv)
    for axis in args.grid:
        if len(axis) < 2:
            parser.error(f"--grid {' '.join(axis)}: expected KEY and at least one value")
    return args


def submit_array(sweep: Sweep, args) -> int:
    """The unfinished points as one submitit job array (or, with --dry-run, its sbatch script)."""
    from slurm.jobs import SweepPointJob
    from slurm.request_checks import check_resources
    from slurm.submit import build_executor, sbatch_script, slurm_parameters

    check_resources(args)  # counts and times SLURM would misread, as slurm/submit.py refuses them
    if args.nodes != 1 or args.tasks_per_node > 1 or args.gpus_per_node > 1:
        raise SweepError(
            "--slurm: a point runs as one task on one node (--nodes 1, "
            "--gpus-per-node 0 or 1); the array runs the points side by side"
        )
    args.stage, args.tasks_per_node = "sweep", 1
    params = slurm_parameters(args)
    params["array_parallelism"] = args.array_parallelism
    job_dir = os.path.abspath(args.job_dir or os.path.join(sweep.output_dir, "slurm"))
    pending = [p for p in sweep.points() if point_status(sweep, p) != "done"]
    if not pending:
        print("every point is finished")
        write_report(sweep)
        return 0
    if args.dry_run:
        print(sbatch_script(job_dir, params, array_size=len(pending)))
        print(f"# array of {len(pending)} tasks, one point each:")
        for i, point in enumerate(pending):
            print(f"#   task {i}: {point.folder}  ({point_status(sweep, point)})")
        return 0
    executor = build_executor(job_dir, params, args)
    jobs = executor.map_array(SweepPointJob(sweep), pending)
    record = {
        "job_ids": [job.job_id for job in jobs],
        "points": [p.folder for p in pending],
        "slurm": params,
        "argv": sys.argv,
        "submitted": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    os.makedirs(sweep.output_dir, exist_ok=True)
    with open(os.path.join(sweep.output_dir, "submission.json"), "w") as f:
        json.dump(record, f, indent=2)
    print(
        f"submitted {len(jobs)} points as array {jobs[0].job_id.split('_')[0]}; logs in {job_dir}"
    )
    if not args.wait:
        print("when it is done: the same command with --collect writes the table and plot")
        return 0
    for job in jobs:
        job.result()
    print(
        open(os.path.join(sweep.output_dir, "results.md")).read()
        if write_report(sweep)
        else "no point finished"
    )
    return 0


@contextlib.contextmanager
def sweep_errors():
    """The sweep's own errors as the project's typed ones (one line at the entry point)."""
    try:
        yield
    except SweepError as err:
        raise ConfigError(str(err)) from None
    except HeldoutError as err:
        raise DatasetError(str(err)) from None


def build_sweep(args) -> Sweep:
    with sweep_errors():
        return Sweep(
            args.config_file,
            [t for s in args.set for t in s],
            [(axis[0], axis[1:]) for axis in args.grid],
            args.output,
            args.heldout,
            args.heldout_n,
            args.readout,
            [t for s in args.linear_set for t in s],
            args.seeds,
            args.heldout_bn,
        )


def sweep_from_arguments(config_file: str, arguments: list[str]) -> Sweep:
    """The sweep stage's config (pretrain/stages.py): this tool's arguments after --config-file
    (--output, --heldout, --grid, --set, ...), checked like a local run checks them."""
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    try:
        args = parse_args(["--config-file", config_file, *arguments])
    except SystemExit:  # argparse printed the problem and the usage
        raise ConfigError(
            f"sweep arguments {' '.join(arguments)!r}: see tools/sweep.py --help"
        ) from None
    sweep = build_sweep(args)
    with sweep_errors():
        sweep.check()
    return sweep


def describe(sweep: Sweep) -> str:
    """Each point with its state and overrides (what --dry-run prints)."""
    return "\n".join(
        f"{point.folder}: {point_status(sweep, point)}; overrides "
        f"{' '.join(sweep.fixed + point.overrides) or '(none)'}"
        for point in sweep.points()
    )


def run_stage(sweep: Sweep, resume: bool = True) -> str:
    """The sweep stage (pretrain/stages.py): every unfinished point, one after the other (a
    finished point is skipped, an interrupted one resumes); returns the table's path."""
    with sweep_errors():
        run_local(sweep)
    return os.path.join(sweep.output_dir, "results.md")


def main(argv=None) -> int:
    args = parse_args(argv)
    sweep = build_sweep(args)
    with sweep_errors():
        if args.collect:
            write_report(sweep)
            print(open(os.path.join(sweep.output_dir, "results.md")).read())
            return 0
        sweep.check()
        if args.slurm:
            return submit_array(sweep, args)
        if args.dry_run:
            print(describe(sweep))
            return 0
        run_local(sweep)
    print(open(os.path.join(sweep.output_dir, "results.md")).read())
    return 0


def entry_point() -> None:
    run_entry_point(main)


if __name__ == "__main__":
    entry_point()
