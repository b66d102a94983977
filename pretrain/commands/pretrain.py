"""Contrastive pretraining (MoCo v1/v2, InfoMin) of a ResNet backbone.

    python tools/pretrain.py --config-file configs/pretrain/mocov2_R50_200ep.yaml [--num-gpus 8] \
        [--resume] [KEY VALUE ...]
"""
import argparse

import torch

from pretrain.common.cli import run_entry_point
from pretrain.common.launch import launch
from pretrain.config import load_cfg
from pretrain.engine.trainer import train


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE")
    parser.add_argument("--num-gpus", type=int, default=0,
                        help="processes on this machine, one per GPU (default: all GPUs, or 1)")
    parser.add_argument("--num-processes", type=int, default=0,
                        help="on a machine without GPUs: CPU processes joined through gloo")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last_checkpoint if there is one")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def run(config_file, opts, resume):
    train(load_cfg(config_file, opts), resume=resume)


def main(argv=None):
    args = parse_args(argv)
    load_cfg(args.config_file, args.opts)  # fail on a bad config before starting processes
    processes = args.num_gpus or args.num_processes or max(1, torch.cuda.device_count())
    launch(run, processes, (args.config_file, args.opts, args.resume))


def entry_point() -> None:
    run_entry_point(main, "rerun with --resume to continue from the last checkpoint")


if __name__ == "__main__":
    entry_point()
