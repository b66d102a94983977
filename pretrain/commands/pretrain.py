"""Contrastive pretraining (MoCo v1/v2, InfoMin) of a ResNet backbone.

    python tools/pretrain.py --config-file configs/pretrain/mocov2_R50_200ep.yaml [--num-gpus 8] \
        [--resume | --force] [--check-data] [KEY VALUE ...]

A non-empty OUTPUT_DIR is refused unless --resume (continue the run there) or --force (delete its
files and start over); both may also come after the KEY VALUE pairs.
"""
import argparse

import torch

from pretrain.common.cli import apply_trailing_flags, run_entry_point
from pretrain.common.launch import launch
from pretrain.config import load_cfg
from pretrain.engine.run_folder import check_run_folder
from pretrain.engine.trainer import MODEL_KEYS, train


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
    parser.add_argument("--force", action="store_true",
                        help="start over in a non-empty OUTPUT_DIR, deleting the run there")
    parser.add_argument("--check-data", action="store_true",
                        help="decode every image before training (DATA.CHECK decode), not only "
                             "its header; bad ones are skipped or stop the run (DATA.ON_BAD_IMAGE)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    apply_trailing_flags(args, ("--resume", "--force", "--check-data"))  # also after KEY VALUE
    return args


def run(config_file, opts, resume, force):
    train(load_cfg(config_file, opts), resume=resume, force=force)


def main(argv=None):
    args = parse_args(argv)
    if args.check_data:
        args.opts = [*args.opts, "DATA.CHECK", "decode"]
    cfg = load_cfg(args.config_file, args.opts)  # fail on a bad config before starting processes
    processes = args.num_gpus or args.num_processes or max(1, torch.cuda.device_count())
    if processes > 1:  # and on an output folder it cannot use (one process checks in train)
        check_run_folder(cfg, MODEL_KEYS, args.resume, args.force)
    launch(run, processes, (args.config_file, args.opts, args.resume, args.force))


def entry_point() -> None:
    run_entry_point(main, "rerun with --resume to continue from the last checkpoint")


if __name__ == "__main__":
    entry_point()
