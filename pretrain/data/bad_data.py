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
# How deep the check before training looks: "off"; "header" (read each file's first and last bytes:
# finds missing, empty and non-image files, and JPEGs and PNGs cut short, cheap); "decode" (decode
# every image fully: also finds damage inside a file, as slow as an epoch of reading; what
# --check-data asks for).
CHECK_DEPTHS = ("off", "header", "decode")
BAD_IMAGES_FILE = "bad_images.txt"
HEADER_BYTES = 16  # enough for the format signatures below
TAIL_BYTES = 32  # where the end markers below sit in a complete file (padding included)
# A complete JPEG ends with its EOI marker, a PNG with its IEND chunk: the usual damage, a copy or
# download cut short, loses them. A file whose last bytes lack the marker is decoded to decide, so
# a complete file with bytes after its end (some cameras append data) is never called bad.
END_MARKERS = ((b"\xff\xd8\xff", b"\xff\xd9"), (b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"))
# The first bytes of the formats of IMAGE_EXTENSIONS (and GIF, JPEG 2000): a file that starts so
# passes the cheap check; any other is opened with Pillow to decide.
SIGNATURES = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"GIF87a",
    b"GIF89a",
    b"P1",
    b"P2",
    b"P3",
    b"P4",
    b"P5",
    b"P6",
    b"\x00\x00\x00\x0cjP  ",
)


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


def ends_complete(head: bytes, tail: bytes) -> bool:
    """Whether a file that starts with `head` and ends with `tail` has its format's end marker
    (True for the formats without one)."""
    for signature, marker in END_MARKERS:
        if head.startswith(signature):
            return marker in tail
    return True


def cheap_problem(head: bytes, tail: bytes, read_all: Callable[[], bytes]) -> str | None:
    """The cheap check of one file from its first HEADER_BYTES and last TAIL_BYTES: its format's
    signature, and its end marker; a file without the marker is read whole (read_all) and decoded
    to decide."""
    problem = image_problem(head, decode=False)
    if problem is None and not ends_complete(head, tail):
        return image_problem(read_all(), decode=True)
    return problem


def read_tail(f, size: int) -> bytes:
    """The last `size` bytes of an open binary file (all of a shorter one)."""
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - size))
    return f.read()


def file_problem(path: str, decode: bool) -> str | None:
    """image_problem of the file at `path` ("no such file" when missing); without `decode` only
    its first and last bytes are read (cheap_problem)."""
    try:
        with open(path, "rb") as f:
            if decode:
                return image_problem(f.read(), decode=True)
            head, tail = f.read(HEADER_BYTES), read_tail(f, TAIL_BYTES)

            def read_all() -> bytes:
                f.seek(0)
                return f.read()

            return cheap_problem(head, tail, read_all)
    except OSError as err:
        return "no such file" if isinstance(err, FileNotFoundError) else f"unreadable ({err})"


def problems_of(
    items: Sequence, problem: Callable, threads: int = 8, chunk: int = 256
) -> list[tuple[object, str]]:
    """(item, reason) of the items for which problem(item) gives a reason, checked by `threads`
    threads in chunks (file reads and Pillow's decoding release the GIL; a future per item would
    cost more than a header read)."""

    def run(start: int) -> list:
        found = ((item, problem(item)) for item in items[start : start + chunk])
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
            raise BadImageError(
                f"{name}: {reason} ({self.key} is error; skip leaves such files out)"
            )
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
