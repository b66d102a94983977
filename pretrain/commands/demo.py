"""The point of the project in one command (`make demo`): contrastive pretraining with views chosen
by InfoMin's principle makes detection better. On real images the package registries provide
(pretrain/demo/synthetic.py: Fashion-MNIST objects on real photos), with no dataset download and
no GPU needed (one is used when present, for longer runs: DEFAULTS_ON):

  1. pretraining of a ResNet-18 on unlabelled views that share only the object
     (pretrain/demo/factor_views.py: the same object rendered twice, each time with a new colour,
     size, place and photo; no label enters)                           (tools/pretrain.py)
     and two probes of it: does it tell images apart (tools/fresh_keys.py), and does it know the
     objects: kNN on held-out labelled objects, against random init    (tools/knn.py)
  2. export of its backbone to Detectron2, verified tensor by tensor   (tools/convert.py --verify)
  3. Mask R-CNN R18-FPN fine-tuned on 60 labelled composites from those weights and, with the
     same schedule and seeds, from random initialisation               (detection/train_net.py)
  4. both evaluated on 120 held-out composites (COCO AP, boxes and masks), mean +- std over seeds
  5. a report: OUTPUT/report.md with the table, pretraining curves and an AP bar plot.

`--table4` adds InfoMin's Table 4: the same pretraining with views that share the background, the
colour or the position instead, and with InfoMin's ImageNet augmentation of one composite.
`--supervised-iters N` adds a backbone pretrained with labels (tools/supervised.py).

Every stage calls the library function behind its user-facing command (named as it starts) and
reads its return value; the fine-tunes run as detection/train_net.py processes (two at a time on
a CPU, --jobs) and come back as the metrics_eval.json each writes. OUTPUT/results.json holds every
figure of the report.
Your own data instead (views from augmentation, demo_R18_infomin.yaml):

    python tools/demo.py --pretrain-images /data/unlabelled \
        --train "format=coco json=/d/train.json images=/d/img" \
        --test "format=coco json=/d/val.json images=/d/img" --num-classes 7
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

from pretrain.common.cli import run_entry_point

from pretrain.commands.demo_report import (
    VIEWS,
    learned_note,
    plot_pretraining,
    summary,
    write_report,
    write_results,
)

# The checkout: the demo reads its configs from there and starts detection/train_net.py in it.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The demo's budget for the machine it runs on: (pretraining config, its iterations, fine-tune
# iterations). The CPU's is sized for `make demo`'s 15 minutes on 2 cores with the install (bf16
# where the CPU has it): 9.0 minutes on a fresh clone of one 2-core machine; a slower one took
# 18 for the earlier defaults, which cost about 1.25x these (estimated 14-15 there). 200
# pretraining steps reach a kNN of 29.8% (30.4 at 250 and 300); 400 fine-tune iterations show the
# gain, 600 give both initialisations higher AP (docs/results/demo_2026-12.md).
# A GPU affords more of the same.
DEFAULTS_ON = {
    "cpu": ("configs/pretrain/demo_R18_objects.yaml", 200, 400),
    "gpu": ("configs/pretrain/demo_R18_objects_gpu.yaml", 2000, 600),
}
DETECTION_CONFIG = "configs/detection/small/synthetic_R_18_FPN_light.yaml"
# Your own images have no factors to share: their views come from augmenting each image.
OWN_IMAGES_CONFIG = "configs/pretrain/demo_R18_infomin.yaml"
# Every figure of the report, as JSON (write_results).
RESULTS_FILE = "results.json"


def announce(*args: str) -> None:
    """Name the command a stage does the work of, so it can be rerun on its own."""
    print(f"\n$ python {' '.join(args)}", flush=True)


def run(*args: str) -> None:
    """Run a stage as a process of its own; its output streams through."""
    announce(*args)
    subprocess.run([sys.executable, *args], cwd=REPO, check=True)


def latest_iteration(folder: str) -> int:
    """The last iteration Detectron2's JSON writer has logged to folder/metrics.json (0 before
    its first line; a line still being written is skipped)."""
    try:
        with open(os.path.join(folder, "metrics.json")) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["iteration"])
        except (ValueError, KeyError):
            continue
    return 0


def run_concurrently(jobs: list[tuple[list[str], str]], at_once: int) -> None:
    """Run the stages `jobs` ([(args, log file)]), `at_once` at a time, each with an equal share of
    the CPU threads; print each one's start, a progress line every half minute (the latest
    iteration each has logged) and its end. On a CPU, two small fine-tunes with one thread each
    get through more iterations per second than one with two threads, which wait on each other in
    every small op."""
    threads = str(max(1, (os.cpu_count() or 1) // at_once))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    pending, running = list(jobs), []
    last_report = time.time()
    while pending or running:
        while pending and len(running) < at_once:
            args, log = pending.pop(0)
            os.makedirs(os.path.dirname(log), exist_ok=True)
            print(f"\n$ python {' '.join(args)}  > {log}", flush=True)
            with open(log, "w") as out:
                running.append(
                    (
                        subprocess.Popen(
                            [sys.executable, *args],
                            cwd=REPO,
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        ),
                        args,
                        log,
                    )
                )
        time.sleep(1)
        for job in list(running):
            proc, args, log = job
            if proc.poll() is None:
                continue
            running.remove(job)
            if proc.returncode:
                with open(log) as f:
                    print(f.read()[-4000:], flush=True)
                raise subprocess.CalledProcessError(proc.returncode, args)
            print(f"done: {log}", flush=True)
        if running and time.time() - last_report > 30:
            last_report = time.time()
            for _proc, _args, log in running:
                folder = os.path.dirname(log)
                print(f"  {folder}: iteration {latest_iteration(folder)}", flush=True)


def knn_readout(
    arch: str, crop: int, checkpoint: str, train_root: str, test_root: str, seed: int = 0
) -> dict:
    """kNN of the backbone's features on the labelled objects (tools/knn.py; a random backbone
    drawn from `seed`): {"top1" (%), "stderr" (binomial, over the test images), "predictions",
    "labels"} (per image, for the paired test)."""
    from pretrain.evaluation.knn import knn_probe

    announce(
        "tools/knn.py",
        "--arch",
        arch,
        "--crop",
        str(crop),
        "--train-root",
        train_root,
        "--test-root",
        test_root,
        *(["--checkpoint", checkpoint] if checkpoint else ["--seed", str(seed)]),
    )
    result = knn_probe(arch, train_root, test_root, checkpoint, crop, seed=seed)
    accuracy, n = result["top1"], result["test_images"]
    print(
        f"kNN (k={result['k']}) top-1: {accuracy:.2f}%  [{checkpoint or 'random init'}, "
        f"{result['stem']} stem]",
        flush=True,
    )
    stderr = 100 * math.sqrt(accuracy / 100 * (1 - accuracy / 100) / max(1, n))
    return {
        "top1": accuracy,
        "stderr": stderr,
        "predictions": result["predictions"],
        "labels": result["labels"],
    }


def pretrain_stage(config_file: str, opts: list[str], resume: bool) -> None:
    """One pretraining, tools/pretrain.py's work, in each process launch() starts."""
    from pretrain.config import load_cfg
    from pretrain.pretraining import train

    train(load_cfg(config_file, opts), resume=resume)


def fresh_key_readout(checkpoint: str, images: str, n: int) -> dict:
    """The fresh-key probe (tools/fresh_keys.py) of `checkpoint` and of its initialisation."""
    from pretrain.evaluation.fresh_key_probe import probe_checkpoints, table

    announce("tools/fresh_keys.py", checkpoint, "--images", images, "--n", str(n), "--with-init")
    probe = probe_checkpoints([checkpoint], images, n, with_init=True)
    print(table(probe), flush=True)
    return probe


def supervised_baseline(
    arch: str, crop: int, train_root: str, val_root: str, iters: int, output_dir: str
) -> float:
    """A backbone pretrained with labels (tools/supervised.py); returns its top-1 (%) on
    `val_root`. The pretraining's crop; crops of half the image or more keep the object in view,
    and batch 64 at 0.1 (0.4 per 256) learns the objects in 1,500 iterations (74.8% top-1)."""
    from pretrain.config import load_supervised_cfg
    from pretrain.supervised import train_supervised

    opts = [
        "MODEL.ARCH",
        arch,
        "DATA.ROOT",
        train_root,
        "DATA.VAL_ROOT",
        val_root,
        "DATA.CROP_SIZE",
        str(crop),
        "DATA.CROP_SCALE",
        "(0.5, 1.0)",
        "SOLVER.BATCH_SIZE",
        "64",
        "SOLVER.BASE_LR",
        "0.4",
        "DATA.NUM_WORKERS",
        str(min(8, os.cpu_count() or 2)),
        "SOLVER.MAX_ITER",
        str(iters),
        "OUTPUT_DIR",
        output_dir,
    ]
    announce("tools/supervised.py", "--resume", *opts)
    return train_supervised(load_supervised_cfg("", opts), resume=True)


def export_to_detectron2(checkpoint: str, weights: str, detection_config: str) -> int:
    """Convert `checkpoint` to Detectron2 weights (tools/convert.py --verify); returns how many
    backbone tensors Detectron2's model was checked to load unchanged."""
    from detection.convert import convert

    announce("tools/convert.py", checkpoint, weights, "--force", "--verify", detection_config)
    summary = convert(checkpoint, weights, force=True, verify_config=detection_config)
    print(
        f"verified: {detection_config} loads all {summary['verified']} backbone tensors "
        f"unchanged\nwrote {weights}",
        flush=True,
    )
    return summary["verified"]


def build_data(args) -> dict:
    """The built-in sets (pretrain/demo/: synthetic.py, factor_views.py), built once into .cache/:
    {"train", "test" (dataset specs), "objects" (labelled folders), "views" {condition: folder}}."""
    from pretrain.demo import factor_views
    from pretrain.demo.synthetic import LAYOUT, build

    cache = os.path.join(REPO, ".cache")
    print("building the demo's images (Fashion-MNIST objects on real photographs) ...", flush=True)
    n_pretrain = args.n_pretrain if "infomin-aug" in args.conditions else 0
    sizes = (n_pretrain, args.n_train, args.n_test, *args.n_objects)
    data = build(
        args.data_dir or os.path.join(cache, f"demo_data_v{LAYOUT}_" + "_".join(map(str, sizes))),
        os.path.join(cache, "demo"),
        n_pretrain,
        args.n_train,
        args.n_test,
        n_objects_train=args.n_objects[0],
        n_objects_test=args.n_objects[1],
    )
    views = {}
    for condition in args.conditions:
        if condition == "infomin-aug":
            views[condition] = os.path.join(data, "pretrain")
            continue
        folder = os.path.join(
            cache, f"demo_views_{condition}_{args.instances[0]}x{args.instances[1]}"
        )
        views[condition] = factor_views.build(
            folder, os.path.join(cache, "demo"), [condition], *args.instances
        )
    return {
        "train": f"format=coco json={data}/train.json images={data}/train",
        "test": f"format=coco json={data}/test.json images={data}/test",
        "objects": [os.path.join(data, "objects", split) for split in ("train", "test")],
        "views": views,
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default="demo_output")
    parser.add_argument(
        "--data-dir",
        default="",
        help="where the built-in composites are made, once (default: .cache/)",
    )
    parser.add_argument(
        "--instances",
        type=int,
        nargs=2,
        default=(3000, 3),
        metavar=("N", "VIEWS"),
        help="built-in unlabelled objects for pretraining, and renderings of each",
    )
    parser.add_argument(
        "--n-pretrain",
        type=int,
        default=6000,
        help="built-in unlabelled composites (for --table4's InfoMin Aug row)",
    )
    parser.add_argument("--n-train", type=int, default=60, help="built-in labelled images")
    parser.add_argument("--n-test", type=int, default=120, help="built-in held-out images")
    parser.add_argument(
        "--n-objects",
        type=int,
        nargs=2,
        default=(3000, 1000),
        metavar=("TRAIN", "TEST"),
        help="built-in labelled objects (kNN probe)",
    )
    parser.add_argument(
        "--table4",
        action="store_true",
        help="also pretrain with views that share the background, the colour or "
        "the position, and with InfoMin Aug of one composite (InfoMin Table 4)",
    )
    parser.add_argument("--pretrain-images", default="", help="your unlabelled images instead")
    parser.add_argument(
        "--pretrain-config",
        default="",
        help=f"default: {DEFAULTS_ON['cpu'][0]}, with a GPU "
        f"{DEFAULTS_ON['gpu'][0]}; with --pretrain-images {OWN_IMAGES_CONFIG}",
    )
    parser.add_argument(
        "--pretrain-iters",
        type=int,
        default=0,
        help=f"default: {DEFAULTS_ON['cpu'][1]}, with a GPU {DEFAULTS_ON['gpu'][1]}",
    )
    parser.add_argument(
        "--train",
        default="",
        help="your training set: a dataset spec (detection/datasets.py) without name=",
    )
    parser.add_argument("--test", default="", help="your held-out set, a dataset spec")
    parser.add_argument("--num-classes", type=int, default=0)
    parser.add_argument(
        "--labelled-train",
        default="",
        help="labelled class folders (ImageNet "
        "layout) for the object probe and the supervised baseline; default: the "
        "built-in objects, none with your own data",
    )
    parser.add_argument("--labelled-test", default="", help="held-out class folders for them")
    parser.add_argument(
        "--supervised-iters",
        type=int,
        default=0,
        help="also fine-tune from a backbone pretrained with labels for this many "
        "iterations of 64 (tools/supervised.py); 0: off (1500: about 7 min on "
        "2 cores)",
    )
    parser.add_argument(
        "--probe-images",
        type=int,
        default=512,
        help="instances for the fresh-key probe of the pretrained model",
    )
    parser.add_argument("--detection-config", default=DETECTION_CONFIG)
    parser.add_argument(
        "--finetune-iters",
        type=int,
        default=None,
        help=f"default: {DEFAULTS_ON['cpu'][2]}, with a GPU "
        f"{DEFAULTS_ON['gpu'][2]} (SOLVER.STEPS at 80%%); 0 with "
        "--detection-config: that config's schedule",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        help="fine-tunes run at once; default: 1 on a GPU, else 2 where there "
        "are 2 or more cores (one thread each on 2 cores)",
    )
    parser.add_argument(
        "--pretrain-seeds",
        type=int,
        default=1,
        help="pretrainings per view condition (SEED 0..N-1); random init's kNN "
        "is drawn from the same seeds, and each is fine-tuned --seeds times",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="fine-tunes per initialisation (SEED 1..N: heads, data order); the "
        "table gives mean +- std",
    )
    args = parser.parse_args(argv)
    if args.pretrain_seeds < 1:
        parser.error(f"--pretrain-seeds {args.pretrain_seeds}: need at least one")
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: need at least one fine-tune per initialisation")
    if bool(args.labelled_train) != bool(args.labelled_test):
        parser.error("--labelled-train and --labelled-test go together")
    if args.pretrain_images and args.table4:
        parser.error("--table4 needs the built-in world's factors, not --pretrain-images")
    return parser, args


def main(argv=None) -> int:
    parser, args = parse_args(argv)
    import torch

    from pretrain.common.launch import launch

    config, iters, finetune_iters = DEFAULTS_ON["gpu" if torch.cuda.is_available() else "cpu"]
    if not args.jobs:
        args.jobs = 1 if torch.cuda.is_available() or (os.cpu_count() or 1) < 2 else 2
    if args.pretrain_images:
        config = OWN_IMAGES_CONFIG
    args.pretrain_config = args.pretrain_config or config
    args.pretrain_iters = args.pretrain_iters or iters
    if args.finetune_iters is None:  # a config of your own keeps its schedule
        args.finetune_iters = 0 if args.detection_config != DETECTION_CONFIG else finetune_iters
    args.conditions = (
        ["object", "background", "colour", "position", "infomin-aug"] if args.table4 else ["object"]
    )

    start = time.time()
    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)
    train_spec, test_spec, data_note = args.train, args.test, "your data"
    labelled_train, labelled_test = args.labelled_train, args.labelled_test
    pretrain_sets = {"your images": args.pretrain_images} if args.pretrain_images else {}
    if not (args.train and args.test) or not args.pretrain_images:
        data = build_data(args)
        train_spec, test_spec = train_spec or data["train"], test_spec or data["test"]
        data_note = "built-in composites (pretrain/demo/synthetic.py)"
        pretrain_sets = pretrain_sets or data["views"]
        if not labelled_train:
            labelled_train, labelled_test = data["objects"]
    if args.supervised_iters and not labelled_train:
        parser.error("--supervised-iters needs labelled images: --labelled-train/--labelled-test")
    minutes = {"data": (time.time() - start) / 60}

    # Every backbone compared: {label: {pretraining seed: checkpoint}} ("" = random init, whose
    # kNN is drawn from each pretraining seed; its fine-tunes start from Detectron2's own init).
    pretrain_seeds = list(range(args.pretrain_seeds))
    checkpoints = {"random init": {seed: "" for seed in pretrain_seeds}}
    pretrain_dirs = {}
    tic = time.time()
    for condition, images in pretrain_sets.items():
        label = (
            "InfoMin Aug of one composite"
            if condition == "infomin-aug"
            else f"views share: {condition}"
            if condition in VIEWS
            else "pretrained"
        )
        checkpoints[label] = {}
        for seed in pretrain_seeds:
            folder = os.path.join(
                output, f"pretrain_{condition.replace(' ', '_')}" + (f"_seed{seed}" if seed else "")
            )
            overrides = [
                "DATA.ROOT",
                images,
                "SOLVER.MAX_ITER",
                str(args.pretrain_iters),
                "OUTPUT_DIR",
                folder,
                *(["SEED", str(seed)] if seed else []),
            ]
            if condition == "infomin-aug":  # the same pretraining, the usual views
                overrides += [
                    "DATA.VIEWS_FROM",
                    "image",
                    "DATA.AUGMENTATION",
                    "infomin",
                    "DATA.CROP_SCALE",
                    "(0.2, 1.0)",
                ]
            announce(
                "tools/pretrain.py", "--config-file", args.pretrain_config, "--resume", *overrides
            )
            launch(
                pretrain_stage,
                max(1, torch.cuda.device_count()),
                (args.pretrain_config, overrides, True),
            )
            checkpoints[label][seed] = os.path.join(folder, "model_final.pth")
            if not seed:
                pretrain_dirs[label] = folder
    minutes["pretraining"] = (time.time() - tic) / 60
    headline = next(label for label in checkpoints if label != "random init")
    probe = fresh_key_readout(
        checkpoints[headline][0], pretrain_sets[next(iter(pretrain_sets))], args.probe_images
    )
    from pretrain.config import load_cfg

    pretrain_cfg = load_cfg(args.pretrain_config)
    arch, crop = pretrain_cfg.MODEL.ARCH, pretrain_cfg.DATA.CROP_SIZE
    supervised_top1 = None
    if args.supervised_iters:
        supervised_dir = os.path.join(output, "supervised")
        supervised_top1 = supervised_baseline(
            arch, crop, labelled_train, labelled_test, args.supervised_iters, supervised_dir
        )
        checkpoints["supervised"] = {0: os.path.join(supervised_dir, "model_final.pth")}
    knn = {}  # {label: {pretraining seed: kNN result}}
    if labelled_train:
        knn = {
            label: {
                seed: knn_readout(arch, crop, path, labelled_train, labelled_test, seed)
                for seed, path in by_seed.items()
            }
            for label, by_seed in checkpoints.items()
        }

    # (label, pretraining seed, Detectron2 weights, run folder name); tensors checked per label
    inits, verified = [], {}
    for label, by_seed in checkpoints.items():
        name = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
        for seed, path in by_seed.items():
            suffix = f"_p{seed}" if seed else ""
            weights = ""
            if path:
                weights = os.path.join(output, f"{name}{suffix}_d2.pkl")
                verified[label] = export_to_detectron2(path, weights, args.detection_config)
            elif seed:
                continue  # random init fine-tunes from Detectron2's init: once per fine-tune seed
            inits.append((label, seed, weights, f"finetune_{name}{suffix}"))

    detection_cfg = (
        []
        if not args.finetune_iters
        else [
            "SOLVER.MAX_ITER",
            str(args.finetune_iters),
            "SOLVER.STEPS",
            f"({int(args.finetune_iters * 0.8)},)",
        ]
    )
    datasets = [f"name=demo_train {train_spec}", f"name=demo_test {test_spec}"]
    common = [
        "--config-file",
        args.detection_config,
        "DATASETS.REGISTER",
        repr(datasets),
        "DATASETS.TRAIN",
        "('demo_train',)",
        "DATASETS.TEST",
        "('demo_test',)",
        *detection_cfg,
    ]
    if args.num_classes:
        common += ["MODEL.ROI_HEADS.NUM_CLASSES", str(args.num_classes)]
    tic = time.time()
    runs, jobs = [], []  # every fine-tune ({"label", "pretrain_seed", "finetune_seed", "folder"})
    for seed in range(1, args.seeds + 1):
        for label, pretrain_seed, init_weights, name in inits:
            folder = os.path.join(output, f"{name}_seed{seed}")
            # --force: the folder holds this job's stdout.txt already (and a rerun's outputs).
            jobs.append(
                (
                    [
                        "detection/train_net.py",
                        "--force",
                        *common,
                        "MODEL.WEIGHTS",
                        init_weights,
                        "SEED",
                        str(seed),
                        "OUTPUT_DIR",
                        folder,
                    ],
                    os.path.join(folder, "stdout.txt"),
                )
            )
            runs.append(
                {
                    "label": label,
                    "pretrain_seed": pretrain_seed,
                    "finetune_seed": seed,
                    "folder": folder,
                }
            )
    if args.jobs == 1:
        for command, _log in jobs:
            run(*command)
    else:
        run_concurrently(jobs, args.jobs)
    minutes["fine-tuning"] = (time.time() - tic) / 60

    from detection.compare import bar_plot, markdown, read_runs

    from pretrain.commands.demo_stats import coco_json_of

    table = read_runs([(r["label"], r["folder"]) for r in runs])
    headline_table, verdicts, tests = summary(
        table, knn, list(checkpoints), "random init", runs, coco_json_of(test_spec)
    )
    bar_plot(table, ["AP", "AP50", "AP75"], os.path.join(output, "ap.png"))
    plot_pretraining(pretrain_dirs, os.path.join(output, "pretraining.png"))
    minutes["total"] = (time.time() - start) / 60
    report = write_report(
        args,
        pretrain_cfg,
        output,
        data_note,
        headline_table,
        verdicts,
        markdown(table, ["AP", "AP50", "AP75"]),
        learned_note(probe),
        minutes,
        labelled_test,
    )
    write_results(
        os.path.join(output, RESULTS_FILE),
        knn,
        table,
        probe,
        supervised_top1,
        verified,
        minutes,
        tests,
    )
    print(
        f"\n{headline_table}\n"
        + "\n".join(verdicts)
        + f"\n\nreport: {report} ({minutes['total']:.1f} min)"
    )
    return 0


def entry_point() -> None:
    run_entry_point(main, "rerun the same command: finished stages are kept")


if __name__ == "__main__":
    entry_point()
