#!/usr/bin/env python
"""The point of the project in one command (`make demo`): contrastive pretraining makes detection
better. On real images the package registries provide (detection/synthetic.py: Fashion-MNIST
objects composited onto real photographs), with no download of a dataset and no GPU needed (one
is used when present, for a longer pretraining: PRETRAIN_ON):

  1. InfoMin pretraining of a ResNet-18 on unlabelled composites      (tools/pretrain.py)
     and two probes of it: has it learned to tell images apart yet (tools/fresh_keys.py), and
     does it know the objects: kNN on held-out labelled objects, against random init (tools/knn.py)
  2. export of its backbone to Detectron2, verified tensor by tensor   (tools/convert.py --verify)
  3. Mask R-CNN R18-FPN fine-tuned on 60 labelled composites from those weights, and with the
     same schedule from random initialisation                          (detection/train_net.py)
  4. both evaluated on 120 held-out composites (COCO AP, boxes and masks)
  5. a report: OUTPUT/report.md, pretraining curves and an AP bar plot as PNG; the table printed.

`--supervised-iters N` adds the third column of every transfer table: a backbone pretrained with
labels (tools/supervised.py on the labelled objects, this world's ImageNet), fine-tuned the same way.

Every stage is the user-facing command, run as a subprocess, with its progress streaming through.
Your own data instead:

    python tools/demo.py --pretrain-images /data/unlabelled \
        --train "format=coco json=/d/train.json images=/d/img" \
        --test "format=coco json=/d/val.json images=/d/img" --num-classes 7
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


# The demo's pretraining for the machine it runs on: (config, iterations). 150 CPU-sized steps
# (1.6 epochs) fit a 2-core CPU's 15-minute budget; a GPU affords 100 epochs of the built-in images
# with the full recipe (JigSaw included). Neither is known to help yet (README, "What to expect":
# 43 epochs on the CPU did not); the GPU's is measured by bench/device/checks.sh detection.
PRETRAIN_ON = {"cpu": ("configs/pretrain/demo_R18_infomin.yaml", 150),
               "gpu": ("configs/pretrain/demo_R18_infomin_gpu.yaml", 2300)}


def run(*args: str) -> str:
    """Run a stage; its output streams through and is returned."""
    print(f"\n$ python {' '.join(args)}", flush=True)
    lines = []
    with subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, args)
    return "".join(lines)


def learned_note(probe_output: str) -> str:
    """The fresh-key probe (tools/fresh_keys.py) of the pretrained model, as a report section:
    whether pretraining has learned to tell images apart yet, which is what the gain waits on."""
    rows = re.findall(r"^(\S+)((?:\s+(?:-?[0-9.]+|nan)){6})$", probe_output, re.MULTILINE)
    chance = re.search(r"chance fresh_acc ([0-9.]+)", probe_output)
    if not rows or not chance:
        return ""
    queue_acc, fresh_acc, _, _, _, cosine = map(float, rows[-1][1].split())
    chance = float(chance.group(1))
    if fresh_acc < 2 * chance:
        verdict = (f"Not yet. Against fresh keys of the other probe images the positive is found "
                   f"for {fresh_acc:.1%} of them (chance {chance:.1%}), and the queries of "
                   f"different images have a mean cosine of {cosine:.3f} (1: one point for all).")
        if queue_acc >= max(0.1, 2 * fresh_acc):
            verdict += (f" Against the stored queue it is found for {queue_acc:.0%}, as in the "
                        f"training log: queue entries written by older key encoders are told "
                        f"apart by their age, not their content.")
        verdict += (" Until pretraining tells images apart, no gain in the table below comes from "
                    "instance discrimination. With the demo's config the projection head "
                    "collapses within the first few dozen steps, and 600 steps do not undo it "
                    "(README, \"What to expect\").")
    else:
        verdict = (f"Yes: against fresh keys of the other probe images the positive is found for "
                   f"{fresh_acc:.1%} of them (chance {chance:.1%}).")
    table = "\n".join(line for line in probe_output.splitlines() if line.strip())
    return (f"## Has pretraining learned to tell images apart?\n\n{verdict}\n\n"
            f"```\n$ python tools/fresh_keys.py ...\n{table}\n```\n")


def plot_pretraining(pretrain_dir: str, path: str) -> None:
    import matplotlib

    from pretrain.engine.progress import read_metrics

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(pretrain_dir) if "loss" in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    its = [r["iteration"] for r in rows]
    left.plot(its, [r["loss"] for r in rows])
    left.set_title("InfoNCE loss")
    right.plot(its, [r["I_NCE"] for r in rows], color="tab:green")
    right.set_title("I_NCE = log(K+1) - loss (nats)")
    for ax in (left, right):
        ax.set_xlabel("iteration")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def gains(table: dict, labels: list[str], baseline: str) -> str:
    """One line per task and initialisation: its mean AP minus that of `baseline`, the means
    the table above shows (detection.compare.mean_std)."""
    from detection.compare import mean_std

    lines = []
    for (dataset, task), by_label in table.items():
        base = by_label.get(baseline, {}).get("AP")
        for label in labels:
            ap = by_label.get(label, {}).get("AP")
            if ap and base:
                lines.append(f"- {dataset} / {task}: {label} - {baseline} = "
                             f"{mean_std(ap)[0] - mean_std(base)[0]:+.1f} AP")
    return "\n".join(lines)


def knn_probe(arch: str, crop: int, checkpoint: str, train_root: str, test_root: str) -> float:
    """kNN top-1 (%) of the backbone's features on the labelled objects (tools/knn.py)."""
    out = run("tools/knn.py", "--arch", arch, "--crop", str(crop), "--train-root", train_root,
              "--test-root", test_root, *(["--checkpoint", checkpoint] if checkpoint else []))
    return float(re.search(r"top-1: ([0-9.]+)%", out).group(1))


def objects_note(accuracies: dict, test_root: str) -> str:
    """The object probe as a report section: what kNN on each backbone's features gets right."""
    rows = "\n".join(f"| {label} | {acc:.1f}% |" for label, acc in accuracies.items())
    classes = sum(entry.is_dir() for entry in os.scandir(test_root))
    random_acc, pretrained_acc = accuracies["random init"], accuracies["InfoMin-pretrained"]
    verdict = (f"Yes: the pretrained backbone's features separate them better than random "
               f"init's, by {pretrained_acc - random_acc:.1f} points."
               if pretrained_acc > random_acc else
               f"No: the pretrained backbone's features separate them no better than random "
               f"init's ({pretrained_acc:.1f}% against {random_acc:.1f}%).")
    return (f"## Does the backbone know the objects?\n\nkNN (k = 200) on the backbone's pooled "
            f"features, neighbours from labelled objects, scored on held-out ones "
            f"(`{test_root}`, {classes} classes: chance {100 / classes:.0f}%). The fine-tune "
            f"starts from these features: a backbone that does "
            f"not separate the objects better than random init gives the detector nothing to "
            f"build on.\n\n{verdict}\n\n| backbone | kNN top-1 |\n|---|---|\n{rows}\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="demo_output")
    parser.add_argument("--data-dir", default="",
                        help="where the built-in composites are made, once (default: .cache/)")
    parser.add_argument("--n-pretrain", type=int, default=6000, help="built-in unlabelled images")
    parser.add_argument("--n-train", type=int, default=60, help="built-in labelled images")
    parser.add_argument("--n-test", type=int, default=120, help="built-in held-out images")
    parser.add_argument("--n-objects", type=int, nargs=2, default=(6000, 1000),
                        metavar=("TRAIN", "TEST"), help="built-in labelled objects")
    parser.add_argument("--pretrain-images", default="", help="your unlabelled images instead")
    parser.add_argument("--pretrain-config", default="",
                        help=f"default: {PRETRAIN_ON['cpu'][0]}, with a GPU "
                        f"{PRETRAIN_ON['gpu'][0]}")
    parser.add_argument("--pretrain-iters", type=int, default=0,
                        help=f"default: {PRETRAIN_ON['cpu'][1]}, with a GPU "
                        f"{PRETRAIN_ON['gpu'][1]}")
    parser.add_argument("--train", default="", help="your training set: a dataset spec "
                        "(detection/datasets.py) without name=")
    parser.add_argument("--test", default="", help="your held-out set, a dataset spec")
    parser.add_argument("--num-classes", type=int, default=0)
    parser.add_argument("--labelled-train", default="", help="labelled class folders (ImageNet "
                        "layout) for the object probe and the supervised baseline; default: the "
                        "built-in objects, none with your own data")
    parser.add_argument("--labelled-test", default="", help="held-out class folders for them")
    parser.add_argument("--supervised-iters", type=int, default=0,
                        help="also fine-tune from a backbone pretrained with labels for this many "
                        "iterations of 64 (tools/supervised.py); 0: off, as it does not fit the "
                        "15-minute budget (1500: about 7 min on 2 cores)")
    parser.add_argument("--probe-images", type=int, default=512,
                        help="images for the fresh-key probe of the pretrained model")
    parser.add_argument("--detection-config",
                        default="configs/detection/small/synthetic_R_18_FPN.yaml")
    parser.add_argument("--finetune-iters", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=1,
                        help="fine-tunes per initialisation (SEED 1..N: heads, data order); the "
                        "table gives mean +- std. One seed's AP moves by 2-3.5 with the seed")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds {args.seeds}: need at least one fine-tune per initialisation")
    if bool(args.labelled_train) != bool(args.labelled_test):
        parser.error("--labelled-train and --labelled-test go together")

    import torch

    config, iters = PRETRAIN_ON["gpu" if torch.cuda.is_available() else "cpu"]
    args.pretrain_config = args.pretrain_config or config
    args.pretrain_iters = args.pretrain_iters or iters

    start = time.time()
    output = os.path.abspath(args.output)
    os.makedirs(output, exist_ok=True)
    train_spec, test_spec, data_note = args.train, args.test, "your data"
    pretrain_images = args.pretrain_images
    labelled_train, labelled_test = args.labelled_train, args.labelled_test
    if not (args.train and args.test) or not args.pretrain_images:
        from detection.synthetic import LAYOUT, build

        print("building the demo's images (Fashion-MNIST objects on real photographs) ...",
              flush=True)
        data_dir = args.data_dir or os.path.join(
            REPO, ".cache", f"demo_data_v{LAYOUT}_" + "_".join(map(str, (
                args.n_pretrain, args.n_train, args.n_test, *args.n_objects))))
        data = build(data_dir, os.path.join(REPO, ".cache", "demo"), args.n_pretrain,
                     args.n_train, args.n_test, n_objects_train=args.n_objects[0],
                     n_objects_test=args.n_objects[1])
        train_spec = train_spec or f"format=coco json={data}/train.json images={data}/train"
        test_spec = test_spec or f"format=coco json={data}/test.json images={data}/test"
        data_note = "built-in composites (detection/synthetic.py)"
        pretrain_images = pretrain_images or os.path.join(data, "pretrain")
        if not labelled_train:
            labelled_train, labelled_test = (os.path.join(data, "objects", split)
                                             for split in ("train", "test"))
    if args.supervised_iters and not labelled_train:
        parser.error("--supervised-iters needs labelled images: --labelled-train/--labelled-test")

    pretrain_dir = os.path.join(output, "pretrain")
    run("tools/pretrain.py", "--config-file", args.pretrain_config, "--resume",
        "DATA.ROOT", pretrain_images, "SOLVER.MAX_ITER", str(args.pretrain_iters),
        "OUTPUT_DIR", pretrain_dir)
    # Every backbone compared, by its pretraining checkpoint ("" = random init), which the object
    # probe reads; `inits` holds each one's Detectron2 weights and run folder for the fine-tunes.
    checkpoints = {"random init": "",
                   "InfoMin-pretrained": os.path.join(pretrain_dir, "model_final.pth")}
    probe = run("tools/fresh_keys.py", checkpoints["InfoMin-pretrained"],
                "--images", pretrain_images, "--n", str(args.probe_images), "--with-init")
    weights = os.path.join(output, "backbone_d2.pkl")
    run("tools/convert.py", checkpoints["InfoMin-pretrained"], weights, "--force",
        "--verify", args.detection_config)
    inits = {"InfoMin-pretrained": (weights, "finetune_pretrained"),
             "random init": ("", "finetune_random")}
    from pretrain.config import load_cfg

    pretrain_cfg = load_cfg(args.pretrain_config)
    arch, crop = pretrain_cfg.MODEL.ARCH, pretrain_cfg.DATA.CROP_SIZE
    if args.supervised_iters:
        # The pretraining's crop; crops of half the image or more keep the object in view, and
        # batch 64 at 0.1 (0.4 per 256) is the recipe measured in the README's table.
        supervised_dir = os.path.join(output, "supervised")
        run("tools/supervised.py", "--resume", "ARCH", arch, "TRAIN_ROOT", labelled_train,
            "VAL_ROOT", labelled_test, "CROP_SIZE", str(crop), "CROP_SCALE", "(0.5, 1.0)",
            "BATCH_SIZE", "64", "BASE_LR", "0.4", "NUM_WORKERS", str(min(8, os.cpu_count() or 2)),
            "MAX_ITER", str(args.supervised_iters), "OUTPUT_DIR", supervised_dir)
        supervised_weights = os.path.join(output, "supervised_d2.pkl")
        checkpoints["supervised"] = os.path.join(supervised_dir, "model_final.pth")
        run("tools/convert.py", checkpoints["supervised"], supervised_weights, "--force",
            "--verify", args.detection_config)
        inits["supervised"] = (supervised_weights, "finetune_supervised")
    objects = ""
    if labelled_train:
        objects = objects_note({label: knn_probe(arch, crop, path, labelled_train, labelled_test)
                                for label, path in checkpoints.items()}, labelled_test)

    datasets = [f"name=demo_train {train_spec}", f"name=demo_test {test_spec}"]
    common = ["--config-file", args.detection_config,
              "DATASETS.REGISTER", repr(datasets), "DATASETS.TRAIN", "('demo_train',)",
              "DATASETS.TEST", "('demo_test',)", "SOLVER.MAX_ITER", str(args.finetune_iters),
              "SOLVER.STEPS", f"({int(args.finetune_iters * 0.8)},)"]
    if args.num_classes:
        common += ["MODEL.ROI_HEADS.NUM_CLASSES", str(args.num_classes)]
    runs = []  # (label, folder): every seed of every initialisation, the same seeds for both
    for seed in range(1, args.seeds + 1):
        for label, (init_weights, name) in inits.items():
            folder = os.path.join(output, name if args.seeds == 1 else f"{name}_seed{seed}")
            run("detection/train_net.py", *common, "MODEL.WEIGHTS", init_weights,
                "SEED", str(seed), "OUTPUT_DIR", folder)
            runs.append((label, folder))

    from detection.compare import bar_plot, markdown, read_runs

    table = read_runs(runs)
    text = (markdown(table, ["AP", "AP50", "AP75"]) + "\n"
            + gains(table, [label for label in inits if label != "random init"], "random init")
            + "\n")
    if args.seeds == 1:
        text += ("\nOne fine-tune per initialisation, so a difference smaller than the spread "
                 "between seeds says nothing: on the built-in set the seed alone moves AP by "
                 "2-3.5 (README, \"What to expect\"). `--seeds N` gives mean +- std.\n")
    bar_plot(table, ["AP", "AP50", "AP75"], os.path.join(output, "ap.png"))
    plot_pretraining(pretrain_dir, os.path.join(output, "pretraining.png"))
    supervised_note = (f"Supervised baseline: `tools/supervised.py`, {args.supervised_iters} "
                       f"iterations on `{labelled_train}`. " if args.supervised_iters else "")
    minutes = (time.time() - start) / 60
    with open(os.path.join(output, "report.md"), "w") as f:
        f.write(f"# Demo: InfoMin pretraining -> Detectron2 fine-tuning\n\n"
                f"Data: {data_note}. Pretraining: `{args.pretrain_config}`, "
                f"{args.pretrain_iters} iterations on `{pretrain_images}`. Fine-tuning: "
                f"`{args.detection_config}`, {args.finetune_iters} iterations from each "
                f"initialisation with {args.seeds} seed(s), evaluated on the held-out set. "
                f"{supervised_note}"
                f"{minutes:.1f} minutes.\n\n"
                f"![pretraining](pretraining.png)\n\n{learned_note(probe)}\n{objects}\n{text}\n"
                f"![AP](ap.png)\n")
    print(f"\n{text}\nreport: {os.path.join(output, 'report.md')} ({minutes:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
