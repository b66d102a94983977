"""Contrastive pretraining (MoCo v1/v2, InfoMin) of a ResNet backbone.

    python tools/pretrain.py --config-file configs/pretrain/mocov2_R50_200ep.yaml [--num-gpus 8] \
        [--resume | --force] [--check-data] [KEY VALUE ...]

A non-empty OUTPUT_DIR is refused unless --resume (continue the run there) or --force (delete its
files and start over); both may also come after the KEY VALUE pairs.
"""

import torch

from pretrain.common.cli import parse_run_folder_args, run_entry_point, run_folder_parser
from pretrain.common.launch import launch
from pretrain.config import load_cfg
from pretrain.engine.run_folder import check_run_folder
from pretrain.pretraining import MODEL_KEYS, train


def parse_args(argv=None):
    parser = run_folder_parser(__doc__)
    parser.add_argument(
        "--num-gpus",
        type=int,
        default=0,
        help="processes on this machine, one per GPU (default: all GPUs, or 1)",
    )
    parser.add_argument(
        "--num-processes",
        type=int,
        default=0,
        help="on a machine without GPUs: CPU processes joined through gloo",
    )
    parser.add_argument(
        "--check-data",
        action="store_true",
        help="decode every image before training (DATA.CHECK decode), not only "
        "its header; bad ones are skipped or stop the run (DATA.ON_BAD_IMAGE)",
    )
    return parse_run_folder_args(parser, argv, ("--check-data",))


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
