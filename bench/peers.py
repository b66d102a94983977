#!/usr/bin/env python
"""Our pretraining and a peer library's, side by side, same everything (the peers issue): for each
method and seed, our tools/pretrain.py and the peer's loop (bench/peer_lightly.py) run one after the
other as processes, their order alternating, and this script prints per side

  start-up   seconds from the process's launch to the end of its first step (imports, the
             image folder's scan and checks, model build, first batch)
  img/s      images per second over the steps after the first WARM ones
  peak MB    the largest resident set among the run's processes (its data workers included)
  kNN        tools/knn.py top-1 on the trained trunk, the same call for both sides, and ours
             minus the peer's with the paired bootstrap over seeds and test images

and the ratios ours / peer. Both sides: torchvision ResNet-18 with our `tinyimagenet` stem, 32 px,
batch 64, SGD momentum 0.9 with one absolute lr and weight decay on every parameter, cosine
to 0 per step without warm-up, two views from one recipe (crop scale 0.2-1, flip, jitter
(0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2, no blur), the same head widths, temperature, queue and
momentum, torch's initialisation; OMP_NUM_THREADS and one data worker each. Precision: lightly's
loop runs fp32 as its examples do; ours fp32 too, or with --ours bf16 the bf16 autocast and
channels-last of SOLVER.CPU_AMP (where the CPU computes bf16 natively). What still differs is
each library's own head layout (see bench/peer_lightly.py and docs/results/peers_*.md).

The peer is an optional dependency: `make bench-peers` installs lightly into .venv; make test
never does.

    python bench/peers.py --images CIFAR/train --test-images CIFAR/test --output DIR \
        [--methods mocov2 simclr byol dino] [--seeds 0 1] [--steps 200] [--threads 1] [--ours bf16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from pretrain.sweep_report import paired_runs_test

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARM = 10  # steps left out of img/s: the first batches wait for the data worker's start

# Ours: a shipped recipe with the protocol's keys; the peer: the same values as flags.
COMMON = [
    "MODEL.ARCH", "resnet18", "MODEL.STEM", "tinyimagenet", "DATA.CROP_SIZE", "32",
    "DATA.CROP_SCALE", "(0.2, 1.0)", "DATA.VIEWS.STEPS", '("jitter", "grayscale", "flip")',
    "DATA.VIEWS.JITTER", "()", "DATA.VIEWS.JITTER_STRENGTH", "0.5", "DATA.VIEWS.JITTER_P", "0.8",
    "DATA.VIEWS.GRAYSCALE_P", "0.2", "DATA.NUM_WORKERS", "1", "SOLVER.OPTIMIZER", "sgd",
    "SOLVER.MOMENTUM", "0.9", "SOLVER.LR_SCALING", "none", "SOLVER.WARMUP_EPOCHS", "0.0",
    "SOLVER.COSINE_FLOOR", "0.0", "SOLVER.DECAY_BIAS_AND_NORM", "True",
    "MODEL.SYNC_BN", "False", "LOG_PERIOD", "1",
    # torch's initialisation, as the peer's trunk (built by our build_backbone) and heads draw
    "MODEL.INIT", "torch", "MODEL.ZERO_INIT_RESIDUAL", "False",
]  # fmt: skip
PRECISION = {
    "fp32": ["SOLVER.CPU_AMP", "False"],
    "bf16": ["SOLVER.CPU_AMP", "True"],
    "recipe": [],
}
METHODS = {
    # name: (our recipe, our extra keys, peer flags); lr and weight decay come from the command.
    "mocov2": (
        "cifar10/mocov2_R18.yaml",
        ["MODEL.BN_SPLITS", "0", "MODEL.SHUFFLE_BN", "False"],
        ["--temperature", "0.2", "--queue", "4096", "--momentum", "0.99", "--feat", "128"],
    ),
    "simclr": ("cifar10/simclr_R18.yaml", [], ["--temperature", "0.5", "--feat", "128"]),
    "byol": (
        "byol_R50_1000ep.yaml",
        ["MODEL.HEAD_HIDDEN_DIM", "512", "MODEL.FEAT_DIM", "128", "MODEL.PREDICTOR_HIDDEN_DIM",
         "512", "MODEL.MOMENTUM", "0.99", "MODEL.MOMENTUM_COSINE", "False"],
        ["--momentum", "0.99", "--feat", "128"],
    ),
    "dino": (
        "dino_R50_100ep.yaml",
        ["MODEL.HEAD_HIDDEN_DIM", "512", "MODEL.FEAT_DIM", "128", "MODEL.DINO.OUT_DIM", "4096",
         "MODEL.DINO.CLIP_GRAD", "0.0", "MODEL.DINO.FREEZE_LAST_LAYER_EPOCHS", "0.0",
         "DATA.MULTI_CROP.NUM_SMALL", "0", "MODEL.MOMENTUM", "0.99", "MODEL.MOMENTUM_COSINE",
         "False"],
        ["--momentum", "0.99", "--feat", "128", "--out-dim", "4096"],
    ),
}  # fmt: skip


def timed_run(cmd: list[str], threads: int, batch: int, log_path: str) -> dict:
    """Runs `cmd`, timestamping each `iter N/S` line it prints; returns start-up, img/s (from
    steps WARM+1..S) and the peak RSS of the run's processes (wait4's rusage of the child, which
    folds in its reaped data workers)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONUNBUFFERED"] = "1"
    start = time.perf_counter()
    stamps: dict[int, float] = {}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in proc.stdout:
            log.write(line)
            if line.startswith("iter "):
                stamps[int(line.split()[1].split("/")[0])] = time.perf_counter()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not stamps:
        with open(log_path) as log:
            last_line = (log.read().strip().splitlines() or [""])[-1]
        raise SystemExit(f"{' '.join(cmd[1:3])} exited {proc.returncode}: {last_line} ({log_path})")
    last = max(stamps)
    first = min(s for s in stamps if s > WARM)
    return {
        "start_up_s": stamps[min(stamps)] - start,
        "img_per_s": (last - first + 1) * batch / (stamps[last] - stamps[first - 1])
        if first - 1 in stamps
        else float("nan"),
        "peak_mb": usage.ru_maxrss / 1024,
        "wall_s": time.perf_counter() - start,
    }


def knn(checkpoint: str, args, json_path: str) -> float:
    subprocess.run(
        [sys.executable, "tools/knn.py", "--checkpoint", checkpoint, "--arch", "resnet18",
         "--stem", "tinyimagenet", "--crop", "32", "--crop-fraction", "1.0", "--train-root",
         args.images, "--test-root", args.test_images, "--train-limit", str(args.knn_train),
         "--test-limit", str(args.knn_test), "--k", "200", "--temperature", "0.1", "--json",
         json_path],
        cwd=REPO, check=True, capture_output=True,
        env=dict(os.environ, OMP_NUM_THREADS=str(os.cpu_count())),
    )  # fmt: skip
    with open(json_path) as f:
        return float(json.load(f)["top1"])


def run_pair(method: str, seed: int, args, folder: str) -> dict[str, dict]:
    recipe, ours_keys, peer_flags = METHODS[method]
    lr, wd = str(args.lr), str(args.weight_decay)
    ours_out, peer_out = os.path.join(folder, "ours"), os.path.join(folder, "peer")
    ours = [
        sys.executable, "tools/pretrain.py", "--force", "--config-file",
        f"configs/pretrain/{recipe}",
        *COMMON, *ours_keys, "DATA.ROOT", args.images, "SOLVER.BATCH_SIZE", str(args.batch),
        "SOLVER.MAX_ITER", str(args.steps), "SOLVER.BASE_LR", lr, "SOLVER.WEIGHT_DECAY", wd,
        "SOLVER.CHECKPOINT_PERIOD", str(args.steps), "SEED", str(seed), "OUTPUT_DIR", ours_out,
        *PRECISION[args.ours],
    ]  # fmt: skip
    peer = [
        sys.executable, "bench/peer_lightly.py", "--method", method, "--images", args.images,
        "--output", peer_out, "--steps", str(args.steps), "--batch", str(args.batch), "--lr", lr,
        "--weight-decay", wd, "--threads", str(args.threads), "--seed", str(seed), *peer_flags,
    ]  # fmt: skip
    sides = [("ours", ours), ("peer", peer)]
    if seed % 2:  # alternate which side runs first, so neither always gets the warmer machine
        sides.reverse()
    result = {}
    for name, cmd in sides:
        result[name] = timed_run(cmd, args.threads, args.batch, os.path.join(folder, f"{name}.log"))
    checkpoints = {
        "ours": os.path.join(ours_out, "model_final.pth"),
        "peer": os.path.join(peer_out, "backbone.pth"),
    }
    for name, path in checkpoints.items():
        result[name]["knn_top1"] = knn(path, args, os.path.join(folder, f"{name}_knn.json"))
    return result


def paired_knn_test(output: str, method: str, seeds: list[int]) -> dict:
    """Ours minus the peer's kNN top-1, the paired bootstrap over seeds and test images (both
    sides classify the same test images with the same training subset)."""
    runs = {}
    for side in ("ours", "peer"):
        runs[side] = []
        for seed in seeds:
            with open(os.path.join(output, f"{method}_seed{seed}", f"{side}_knn.json")) as f:
                runs[side].append(dict(json.load(f), seed=seed))
    return paired_runs_test(runs["ours"], runs["peer"])


def summary(rows: list[dict], key: str) -> tuple[float, float]:
    values = [r[key] for r in rows]
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", required=True, help="training class folders")
    parser.add_argument("--test-images", required=True, help="kNN test class folders")
    parser.add_argument("--output", required=True)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--knn-train", type=int, default=5000)
    parser.add_argument("--knn-test", type=int, default=2000)
    parser.add_argument(
        "--ours",
        choices=list(PRECISION),
        default="fp32",
        help="our side's precision: fp32 as the peer's loop (default), bf16 (SOLVER.CPU_AMP: "
        "bf16 autocast and channels-last where the CPU computes bf16 natively), or the recipe's",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="print the table of OUTPUT's earlier run"
    )
    args = parser.parse_args(argv)
    if args.steps <= WARM + 1:
        parser.error(f"--steps must exceed {WARM + 1}: img/s leaves out the first {WARM} steps")
    try:
        if not args.report_only:
            import lightly  # noqa: F401
    except ImportError:
        raise SystemExit("bench/peers.py: lightly is not installed; run `make bench-peers`")
    results: dict[str, dict[int, dict]] = {}
    for seed in [] if args.report_only else args.seeds:  # seeds outermost: methods interleave
        for method in args.methods:
            folder = os.path.join(args.output, f"{method}_seed{seed}")
            os.makedirs(folder, exist_ok=True)
            results.setdefault(method, {})[seed] = run_pair(method, seed, args, folder)
            with open(os.path.join(args.output, "results.json"), "w") as f:
                json.dump(results, f, indent=1)
    if args.report_only:  # the table of an earlier run of this command (JSON keys are strings)
        with open(os.path.join(args.output, "results.json")) as f:
            saved = json.load(f)
        results = {m: {int(s): r for s, r in saved[m].items()} for m in args.methods if m in saved}
    print(f"{args.threads} thread(s), batch {args.batch}, {args.steps} steps, seeds {args.seeds}")
    print(
        f"{'method':8} {'side':5} {'img/s':>14} {'start-up s':>14} {'peak MB':>10} "
        f"{'kNN top-1':>14} | ratios ours/peer: img/s, start-up"
    )
    for method, by_seed in results.items():
        for side in ("ours", "peer"):
            rows = [by_seed[s][side] for s in args.seeds]
            (ips, ips_sd), (up, up_sd) = summary(rows, "img_per_s"), summary(rows, "start_up_s")
            (mem, _), (acc, acc_sd) = summary(rows, "peak_mb"), summary(rows, "knn_top1")
            line = (
                f"{method:8} {side:5} {ips:8.1f} ±{ips_sd:4.1f} {up:8.1f} ±{up_sd:4.1f} "
                f"{mem:10.0f} {acc:8.2f} ±{acc_sd:4.2f}"
            )
            if side == "peer":
                test = paired_knn_test(args.output, method, args.seeds)
                ratio = [by_seed[s]["ours"]["img_per_s"] / by_seed[s]["peer"]["img_per_s"]
                         for s in args.seeds]  # fmt: skip
                startup = [by_seed[s]["ours"]["start_up_s"] / by_seed[s]["peer"]["start_up_s"]
                           for s in args.seeds]  # fmt: skip
                line += f" | {statistics.mean(ratio):.2f}x, {statistics.mean(startup):.2f}x"
                line += (
                    f"; kNN ours - peer {test['difference']:+.2f} "
                    f"[{test['ci'][0]:+.2f}, {test['ci'][1]:+.2f}], p {test['p']:.3f}"
                )
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
