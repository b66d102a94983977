"""What a stage does with an image it cannot use (missing, empty, not an image, truncated): the
config says "skip" (leave it out, name it in OUTPUT_DIR/bad_images.txt, go on) or "error" (stop
with one line naming the file). Shared by pretraining (DATA.ON_BAD_IMAGE), the readouts and
detection (DATASETS.ON_BAD_IMAGE)."""
from __future__ import annotations

import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from PIL import Image

from ..common.atomic_io import atomic_write_text
from ..common.errors import ConfigError, DatasetError

ON_BAD_CHOICES = ("skip", "error")
# How deep the check before training looks: "off"; "header" (read each file's first bytes: finds
# missing, empty and non-image files, cheap); "decode" (decode every image fully:
# also finds truncated files, as slow as an epoch of reading; what --check-data asks for).
CHECK_DEPTHS = ("off", "header", "decode")
BAD_IMAGES_FILE = "bad_images.txt"
HEADER_BYTES = 16  # enough for the format signatures below
# The first bytes of the formats of IMAGE_EXTENSIONS (and GIF, JPEG 2000): a file that starts so
# passes the cheap check; any other is opened with Pillow to decide.
SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"GIF87a",
              b"GIF89a", b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"\x00\x00\x00\x0cjP  ")


class BadImageError(DatasetError):
    """An image that cannot be used, named by path, in one line.

    Raised inside a DataLoader worker, torch re-raises it in the main process as
    `BadImageError("Caught BadImageError in DataLoader worker process 0.\\nOriginal Traceback
    ...")`; the constructor keeps only the original message, so the user still sees one line."""

    def __init__(self, message: str):
        marker = f"{type(self).__name__}: "
        if message.startswith("Caught ") and "Original Traceback" in message:
            last = [line for line in message.splitlines() if marker in line]
            if last:
                message = last[-1].split(marker, 1)[1]
        super().__init__(message)


def check_choice(key: str, value: str, choices=ON_BAD_CHOICES) -> str:
    if value not in choices:
        raise ConfigError(f"{key} {value!r}: expected one of {', '.join(choices)}")
    return value


def _is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def image_problem(data: bytes, decode: bool) -> str | None:
    """Why `data` (a file's bytes, or its first HEADER_BYTES for the cheap check) is no usable
    image, or None. The cheap check looks at the format's signature only (a Pillow header read
    costs ~0.1-0.5 ms in Python, minutes over ImageNet); a truncated file passes it."""
    if not data:
        return "empty file"
    if not decode and (data.startswith(SIGNATURES) or _is_webp(data)):
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            if decode:
                img.load()
    except Exception as err:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        reason = f"{type(err).__name__}: {err}".replace("\n", " ")
        return reason if decode else f"not an image file ({reason})"
    return None


def file_problem(path: str, decode: bool) -> str | None:
    """image_problem of the file at `path` ("no such file" when missing); without `decode` only
    its first bytes are read."""
    try:
        with open(path, "rb") as f:
            data = f.read() if decode else f.read(HEADER_BYTES)
    except OSError as err:
        return "no such file" if isinstance(err, FileNotFoundError) else f"unreadable ({err})"
    return image_problem(data, decode)


def problems_of(items: Sequence, problem: Callable, threads: int = 8,
                chunk: int = 256) -> list[tuple[object, str]]:
    """(item, reason) of the items for which problem(item) gives a reason, checked by `threads`
    threads in chunks (file reads and Pillow's decoding release the GIL; a future per item would
    cost more than a header read)."""
    def run(start: int) -> list:
        found = ((item, problem(item)) for item in items[start:start + chunk])
        return [(item, reason) for item, reason in found if reason is not None]

    starts = range(0, len(items), chunk)
    if threads <= 1:
        return [entry for start in starts for entry in run(start)]
    with ThreadPoolExecutor(threads) as pool:
        return [entry for found in pool.map(run, starts) for entry in found]


class BadImageLog:
    """The distinct bad files one process met, each appended once to OUTPUT_DIR/bad_images.txt
    ("path<TAB>reason"); with on_bad "error" the first one stops the run instead."""

    def __init__(self, output_dir: str = "", on_bad: str = "skip", key: str = "DATA.ON_BAD_IMAGE"):
        self.path = os.path.join(output_dir, BAD_IMAGES_FILE) if output_dir else ""
        self.on_bad, self.key = on_bad, key
        self.seen: set[str] = set()

    def add(self, entries) -> int:
        """Record (name, reason) pairs; returns how many files were new (a file drawn again, or
        by another sample of the batch, counts once)."""
        new = [(name, reason) for name, reason in dict(entries).items() if name not in self.seen]
        if new and self.on_bad == "error":
            name, reason = new[0]
            raise BadImageError(f"{name}: {reason} ({self.key} is error; skip leaves such "
                                f"files out)")
        for name, reason in new:
            self.seen.add(name)
            print(f"warning: skipped unreadable image {name}: {reason}", file=sys.stderr)
        if new and self.path:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path, "a") as f:  # one short write per file: safe from many processes
                for name, reason in new:
                    f.write(f"{name}\t{reason}\n")
        return len(new)


def write_bad_list(output_dir: str, entries) -> str:
    """OUTPUT_DIR/bad_images.txt holding exactly `entries` (the check before training); returns
    its path."""
    path = os.path.join(output_dir, BAD_IMAGES_FILE)
    os.makedirs(output_dir, exist_ok=True)
    atomic_write_text("".join(f"{name}\t{reason}\n" for name, reason in entries), path)
    return path
