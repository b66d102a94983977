"""Has pretraining learned to tell images apart yet? Scores pretraining checkpoints against fresh
keys (pretrain/evaluation/fresh_key_probe.py), next to the queue accuracy the training log shows.

    python tools/fresh_keys.py output/pretrain/run/model_final.pth [more.pth ...] \
        --images DIR [--n 1024] [--with-init] [--json scores.json]

Each checkpoint is rebuilt from the config it stores, and the probe images get that config's
views (epoch 0 of its seed), scored in batches of its SOLVER.BATCH_SIZE."""

import argparse

from pretrain.common.cli import run_entry_point
from pretrain.evaluation import fresh_key_probe as probe


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--images", required=True, help="image folder (any DATA.ROOT layout)")
    parser.add_argument("--n", type=int, default=1024, help="probe images (rounded to batches)")
    parser.add_argument(
        "--with-init",
        action="store_true",
        help="also score the first checkpoint's config at its initialisation",
    )
    parser.add_argument(
        "--json", default="", metavar="PATH", help="also write the scores there (NaN as null)"
    )
    args = parser.parse_args(argv)

    print(probe.header_line())
    result = probe.probe_checkpoints(
        args.checkpoints,
        args.images,
        args.n,
        args.with_init,
        on_row=lambda row: print(probe.row_line(row), flush=True),
    )
    print(probe.footer_line(result))
    if args.json:
        probe.write_json(result, args.json)
    return 0


def entry_point() -> None:
    run_entry_point(main)


if __name__ == "__main__":
    entry_point()
