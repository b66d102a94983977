#!/usr/bin/env python
"""Start-up of the check before training on an image folder: the first run (every file's first
and last bytes read; a file without its end marker decoded), then a rerun into a new run folder
(every verdict from the user's cache: one stat per file), then the same with the decode check.

    python bench/image_check.py IMAGE_ROOT [--threads 8]

Uses a cache folder of its own (a temporary XDG_CACHE_HOME), so the user's cache is untouched and
the first run really is the first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root")
    parser.add_argument("--threads", type=int, default=8, help="DATA.NUM_WORKERS (check threads)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["XDG_CACHE_HOME"] = os.path.join(scratch, "cache")
        from pretrain.config import load_cfg
        from pretrain.data.checks import checked_images

        def run(name: str, depth: str) -> float:
            cfg = load_cfg(
                opts=[
                    "DATA.ROOT",
                    args.root,
                    "DATA.CHECK",
                    depth,
                    "DATA.NUM_WORKERS",
                    str(args.threads),
                    "OUTPUT_DIR",
                    os.path.join(scratch, name),
                ]
            )
            start = time.perf_counter()
            kept = checked_images(cfg)
            seconds = time.perf_counter() - start
            print(
                f"{name:<22} DATA.CHECK {depth:<7} {len(kept):>8} images kept {seconds:8.2f} s",
                flush=True,
            )
            return seconds

        first = run("first run", "header")
        rerun = run("rerun (cached)", "header")
        decode = run("first decode check", "decode")
        decode_rerun = run("decode rerun (cached)", "decode")
        print(
            f"rerun / first: {rerun / first:.3f}; decode rerun / decode: "
            f"{decode_rerun / decode:.3f}"
        )


if __name__ == "__main__":
    main()
