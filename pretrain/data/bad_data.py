"""What a stage does with an image it cannot use (missing, empty, not an image, truncated): the
config says "skip" (leave it out, name it in OUTPUT_DIR/bad_images.txt, go on) or "error" (stop
with one line naming the file). Shared by pretraining (DATA.ON_BAD_IMAGE), the readouts and
detection (DATASETS.ON_BAD_IMAGE)."""
from __future__ import annotations

import io
import os
import sys

from PIL import Image

from ..common.errors import ConfigError, DatasetError

ON_BAD_CHOICES = ("skip", "error")
# How deep the check before training looks: "off"; "header" (open each file and read its image
# header: finds missing, empty and non-image files, cheap); "decode" (decode every image fully:
# also finds truncated files, as slow as an epoch of reading; what --check-data asks for).
CHECK_DEPTHS = ("off", "header", "decode")
BAD_IMAGES_FILE = "bad_images.txt"
HEADER_BYTES = 1 << 16  # enough for a JPEG's markers up to its frame header, EXIF included


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


def image_problem(data: bytes, decode: bool) -> str | None:
    """Why `data` (a file's bytes, or its first HEADER_BYTES for a header check) is no usable
    image, or None. Pillow reads a header lazily, so a truncated JPEG passes unless `decode`."""
    if not data:
        return "empty file"
    try:
        with Image.open(io.BytesIO(data)) as img:
            if decode:
                img.load()
            elif img.width < 1 or img.height < 1:
                return f"image size {img.width}x{img.height}"
    except Exception as err:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        return f"{type(err).__name__}: {err}".replace("\n", " ")
    return None


def file_problem(path: str, decode: bool) -> str | None:
    """image_problem of the file at `path` ("no such file" when missing)."""
    try:
        with open(path, "rb") as f:
            data = f.read() if decode else f.read(HEADER_BYTES)
    except OSError as err:
        return "no such file" if isinstance(err, FileNotFoundError) else f"unreadable ({err})"
    return image_problem(data, decode)


class BadImageLog:
    """The distinct bad files one process met, each appended once to OUTPUT_DIR/bad_images.txt
    ("path<TAB>reason"); with on_bad "error" the first one stops the run instead."""

    def __init__(self, output_dir: str = "", on_bad: str = "skip", key: str = "DATA.ON_BAD_IMAGE"):
        self.path = os.path.join(output_dir, BAD_IMAGES_FILE) if output_dir else ""
        self.on_bad, self.key = on_bad, key
        self.seen: set[str] = set()

    def add(self, entries) -> int:
        """Record (name, reason) pairs; returns how many files were new. A name of None (a file
        named elsewhere) is counted each time."""
        unnamed = sum(1 for name, _ in entries if name is None)
        new = [(name, reason) for name, reason in dict(entries).items()
               if name is not None and name not in self.seen]
        if unnamed and self.on_bad == "error":
            raise BadImageError(f"an image was unreadable (named in the warning above; {self.key} "
                                f"is error)")
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
        return len(new) + unnamed


def write_bad_list(output_dir: str, entries) -> str:
    """OUTPUT_DIR/bad_images.txt holding exactly `entries` (the check before training); returns
    its path."""
    path = os.path.join(output_dir, BAD_IMAGES_FILE)
    os.makedirs(output_dir, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.writelines(f"{name}\t{reason}\n" for name, reason in entries)
    os.replace(tmp, path)
    return path
