"""The check of the pretraining images before training (DATA.CHECK, tools/pretrain.py --check-data):
every listed file's first and last bytes are read and must be an image format's signature and,
for JPEG and PNG, its end marker (a file cut short is decoded to decide) ("header"), or
every image is decoded ("decode"); bad ones are left out and listed in
OUTPUT_DIR/bad_images.txt (DATA.ON_BAD_IMAGE skip) or stop the run with one line naming the first
(error). The result is kept in OUTPUT_DIR/data_check.json, so a resume neither pays for the check
again nor samples from a different list of images; each file's verdict is also kept in the user's
cache (check_cache.py, DATA.CHECK_CACHE), so another run on the same images reads only the files
that changed."""

from __future__ import annotations

import hashlib
import json
import os
import sys

import torch

from ..common.atomic_io import atomic_write_text
from .bad_data import (
    BAD_IMAGES_FILE,
    CHECK_DEPTHS,
    HEADER_BYTES,
    TAIL_BYTES,
    BadImageError,
    cheap_problem,
    check_choice,
    image_problem,
    problems_of,
    write_bad_list,
)
from .check_cache import load_verdicts, save_verdicts
from .packed import ImageSubset, open_images

CHECK_FILE = "data_check.json"


def image_list_digest(images) -> str:
    """Identifies the list of images (names, in order): a cached check applies only to it."""
    digest = hashlib.sha1()
    for index in range(len(images)):
        digest.update(images.name(index).encode() + b"\n")
    return digest.hexdigest()


def _problem(images, index: int, decode: bool) -> str | None:
    try:
        if decode:
            return image_problem(images.read(index), decode=True)
        return cheap_problem(
            images.head(index, HEADER_BYTES),
            images.tail(index, TAIL_BYTES),
            lambda: images.read(index),
        )
    except FileNotFoundError:
        return "no such file"
    except OSError as err:
        return f"unreadable ({err})"


def find_bad_images(
    images, depth: str, threads: int = 8, indices=None, cache: dict | None = None
) -> tuple[list[tuple[int, str]], dict]:
    """(index, reason) of every image of `indices` (default: all) that fails the check `depth`,
    and the verdicts reached afresh ({key: [stamp, depth, problem]}). A verdict of `cache`
    (check_cache.load_verdicts) stands for an image whose stamp is unchanged and that was checked
    at least as deep (a problem found is a problem at any depth)."""
    if depth == "off":
        return [], {}
    indices = range(len(images)) if indices is None else indices
    cache = cache or {}
    deep_enough = set(CHECK_DEPTHS[CHECK_DEPTHS.index(depth) :])
    fresh = {}

    def verdict(index: int) -> str | None:
        stamp = images.stamp(index)
        key = images.key(index)
        hit = cache.get(key) if stamp is not None else None
        if (
            isinstance(hit, list)
            and len(hit) == 3
            and hit[0] == stamp
            and (hit[2] is not None or hit[1] in deep_enough)
        ):
            return hit[2]
        problem = _problem(images, index, depth == "decode")
        if stamp is not None:
            fresh[key] = [stamp, depth, problem]  # one key per thread's item: no lock needed
        return problem

    return problems_of(indices, verdict, threads), fresh


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _from_rank0(value):
    """Rank 0's `value` on every process (the processes must agree whether to check)."""
    if not _distributed():
        return value
    holder = [value]
    torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]


def _gather(bad: list) -> list:
    """Every process's share of the check, on every process (rank order)."""
    if not _distributed():
        return bad
    shares = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(shares, bad)
    return sorted(entry for share in shares for entry in share)


def _gather_dicts(share: dict) -> dict:
    """Every process's dict merged, on every process."""
    if not _distributed():
        return share
    shares = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(shares, share)
    return {key: value for part in shares for key, value in part.items()}


def _cached(path: str, digest: str, depth: str) -> list | None:
    """The bad list of an earlier check of the same images at least as deep, or None."""
    try:
        with open(path) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        return None
    if cached.get("digest") != digest or CHECK_DEPTHS.index(
        cached.get("depth", "off")
    ) < CHECK_DEPTHS.index(depth):
        return None
    return [tuple(entry) for entry in cached["bad"]]


def checked_images(cfg, rank: int = 0, world_size: int = 1):
    """The images of cfg.DATA.ROOT less the ones the check before training finds bad (see the
    module docstring); every process calls it and gets the same list."""
    depth = check_choice("DATA.CHECK", cfg.DATA.CHECK, CHECK_DEPTHS)
    on_bad = check_choice("DATA.ON_BAD_IMAGE", cfg.DATA.ON_BAD_IMAGE)
    images = open_images(cfg.DATA.ROOT)
    if depth == "off":
        return images
    digest = image_list_digest(images)
    cache_path = os.path.join(cfg.OUTPUT_DIR, CHECK_FILE)
    bad = _from_rank0(_cached(cache_path, digest, depth) if rank == 0 else None)
    if bad is None:
        if rank == 0:
            print(
                f"checking {len(images)} images of {cfg.DATA.ROOT} (DATA.CHECK {depth})",
                file=sys.stderr,
                flush=True,
            )
        cache = load_verdicts(cfg.DATA.ROOT) if cfg.DATA.CHECK_CACHE else {}
        share, fresh = find_bad_images(
            images, depth, cfg.DATA.NUM_WORKERS, range(rank, len(images), world_size), cache
        )
        bad = _gather(share)
        fresh = _gather_dicts(fresh) if cfg.DATA.CHECK_CACHE else {}
        if rank == 0:
            save_verdicts(cfg.DATA.ROOT, fresh)
            os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
            atomic_write_text(
                json.dumps(
                    {
                        "root": cfg.DATA.ROOT,
                        "count": len(images),
                        "digest": digest,
                        "depth": depth,
                        "bad": bad,
                    }
                ),
                cache_path,
            )
    if not bad:
        return images
    named = [(images.name(i), reason) for i, reason in bad]
    if rank == 0:
        write_bad_list(cfg.OUTPUT_DIR, named)
    if on_bad == "error":
        raise BadImageError(
            f"{named[0][0]}: {named[0][1]} ({len(bad)} bad images, listed in "
            f"{os.path.join(cfg.OUTPUT_DIR, BAD_IMAGES_FILE)}; DATA.ON_BAD_IMAGE "
            f"skip leaves them out)"
        )
    if rank == 0:
        print(
            f"warning: {len(bad)} of {len(images)} images are unusable and left out (listed in "
            f"{os.path.join(cfg.OUTPUT_DIR, BAD_IMAGES_FILE)})",
            file=sys.stderr,
        )
    dropped = {i for i, _ in bad}
    return ImageSubset(images, [i for i in range(len(images)) if i not in dropped])
